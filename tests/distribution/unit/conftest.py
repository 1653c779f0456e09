"""Unit tests import the shared fakes of the ports (`distribution_fakes`, a name no other service's tests use)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
