"""HTTP answers of the networks mapped to our errors, shared by the LinkedIn and X clients."""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime

import httpx

from .errors import NetworkError, NotFound, RateLimited, Unauthorized


def retry_after_seconds(response: httpx.Response, now: float | None = None) -> float | None:
    """Retry-After (seconds or an HTTP date), else X's x-rate-limit-reset (epoch seconds), else None."""
    now = time.time() if now is None else now
    value = response.headers.get("retry-after")
    if value:
        if value.strip().isdigit():
            return float(value.strip())
        try:
            return max(parsedate_to_datetime(value).timestamp() - now, 0.0)
        except (TypeError, ValueError):
            return None
    reset = response.headers.get("x-rate-limit-reset")
    if reset and reset.strip().isdigit():
        return max(float(reset) - now, 0.0)
    return None


def checked(response: httpx.Response) -> httpx.Response:
    if response.status_code == 401:
        raise Unauthorized("the network refused the token (401)")
    if response.status_code == 429:
        raise RateLimited(retry_after_seconds(response))
    if response.status_code in (400, 403, 404):
        # 400: a code or URN the network does not accept (LinkedIn's invalid_grant); 403/404: not this
        # member's post, or gone. None of them gets better by asking again.
        raise NotFound(f"the network answered {response.status_code}")
    if response.status_code >= 400:
        raise NetworkError(f"the network answered {response.status_code}")
    return response


async def get(client: httpx.AsyncClient, url: str, **kwargs) -> httpx.Response:
    try:
        return checked(await client.get(url, **kwargs))
    except httpx.HTTPError as error:
        raise NetworkError(f"{type(error).__name__} calling the network") from None


async def post_form(client: httpx.AsyncClient, url: str, data: dict[str, str]) -> httpx.Response:
    try:
        return checked(await client.post(url, data=data, headers={"Accept": "application/json"}))
    except httpx.HTTPError as error:
        raise NetworkError(f"{type(error).__name__} calling the network") from None
