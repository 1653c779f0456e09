"""A logging filter that takes personal data and credentials out of every log line.

Uvicorn's access log writes the full path with its query (`filter=userName eq "ann@corp.example"`,
`?access_token=...`); an exception message may quote a header. The filter rewrites each record's
message, and its formatted traceback, before any handler writes it: values of sensitive query
parameters, e-mail addresses, bearer tokens, JWT-shaped strings and Authorization headers become
`[redacted]`.
"""

from __future__ import annotations

import logging
import re

REDACTED = "[redacted]"
SENSITIVE_QUERY_PARAMS = (  # `ticket`: the stream ticket of the metrics SSE
    "filter", "access_token", "id_token", "refresh_token", "token", "code", "state",
    "password", "secret", "client_secret", "api_key", "key", "signature", "email", "ticket")
_QUERY_VALUE = re.compile(r"(?i)([?&;](?:%s)=)[^&#\s\"']*" % "|".join(map(re.escape, SENSITIVE_QUERY_PARAMS)))
_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+(?:@|%40)[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+")
_AUTHORIZATION = re.compile(r"(?i)(\b(?:proxy-)?authorization['\"]?\s*[:=,]\s*['\"]?)[^'\"\r\n,}]+")
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/\-]+=*")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*")


def redact(text: str) -> str:
    text = _AUTHORIZATION.sub(lambda m: m.group(1) + REDACTED, text)
    text = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    text = _JWT.sub(REDACTED, text)
    text = _QUERY_VALUE.sub(lambda m: m.group(1) + REDACTED, text)
    return _EMAIL.sub(REDACTED, text)


def _redacted_argument(argument: object) -> object:
    if argument is None or isinstance(argument, (bool, int, float)):
        return argument
    return redact(str(argument))


class RedactingFilter(logging.Filter):
    """Install on handlers (records from every logger pass) and on uvicorn's loggers."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "redacted", False):
            return True
        # Arguments are redacted one by one and stay arguments: uvicorn's access formatter unpacks them.
        record.msg = redact(record.msg) if isinstance(record.msg, str) else redact(str(record.msg))
        if isinstance(record.args, tuple):
            record.args = tuple(_redacted_argument(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {key: _redacted_argument(arg) for key, arg in record.args.items()}
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        record.redacted = True
        return True


UVICORN_LOGGERS = ("uvicorn", "uvicorn.access", "uvicorn.error")


def install_redaction(handler: logging.Handler) -> None:
    redacting = RedactingFilter()
    handler.addFilter(redacting)
    for name in UVICORN_LOGGERS:
        # In case uvicorn was given its own handlers (log_config), its records are redacted too.
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(redacting)
