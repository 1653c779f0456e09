"""Unit fixtures: the service on the in-memory fakes of its ports, with a clock the test moves."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The shared fakes are a module beside the tests (importlib mode does not put this folder on the path).
sys.path.insert(0, str(Path(__file__).parent))

from content_fakes import Clock, Fakes  # noqa: E402

from content.service import ContentService  # noqa: E402


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store() -> Fakes:
    return Fakes()


@pytest.fixture
def service(store, clock) -> ContentService:
    return ContentService(store.campaigns, store.items, store.tenant_settings, store.ambassadors, clock)
