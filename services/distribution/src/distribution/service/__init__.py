"""The use cases of distribution, by role: `sharing` (feed, prepare, confirm, policy), `tracking` (the public
redirect and its clicks), `engagement` (connectors, their signed reports, comments awaiting a reply)."""

from __future__ import annotations

from dataclasses import dataclass

from ..connectors.service import NetworkConnections
from ..options import Options
from .engagement import Engagement
from .sharing import Sharing
from .tracking import Tracking

__all__ = ["Distribution", "Engagement", "Sharing", "Tracking"]


@dataclass(frozen=True)
class Distribution:
    """What the endpoints work with; built by bootstrap and kept on `app.state.distribution`."""

    sharing: Sharing
    tracking: Tracking
    engagement: Engagement
    connections: NetworkConnections
    options: Options
