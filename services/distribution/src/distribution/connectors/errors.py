"""What a network's answer means for us, whichever network it is."""

from __future__ import annotations


class NetworkError(Exception):
    """The network could not answer now (5xx, timeout, bad shape): try again later."""


class Unauthorized(NetworkError):
    """401: the token lapsed or was revoked. Stop using it until the person reconnects."""


class RateLimited(NetworkError):
    """429: slow down; `retry_after` seconds when the network said (Retry-After, x-rate-limit-reset)."""

    def __init__(self, retry_after: float | None):
        super().__init__(f"rate limited, retry after {retry_after}")
        self.retry_after = retry_after


class NotFound(NetworkError):
    """403/404 on a post: not a post of this member (or gone). Never retried for that post."""


class BudgetSpent(Exception):
    """The tenant's request budget for this network is used up for today."""
