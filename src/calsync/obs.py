"""Structured logs (structlog): one JSON object per line, secrets masked before rendering.

Both structlog loggers and the standard library's (`logging.getLogger(...).info(msg,
extra={...})`, uvicorn, httpx) go through the same processors, so a refresh token handed to a
log call by mistake — as a field, inside a message, inside a URL — comes out as `[redacted]`.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping
from typing import Any

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

MASK = "[redacted]"
# field names whose values are secrets, whatever they contain
SECRET_KEYS = frozenset(
    {
        "access_token",
        "api_key",
        "apikey",
        "assertion",
        "authorization",
        "channel_token",
        "client_secret",
        "code_verifier",
        "cookie",
        "id_token",
        "key",
        "password",
        "private_key",
        "refresh_token",
        "secret",
        "secret_key",
        "service_account_key",
        "set-cookie",
        "token",
        "x-goog-channel-token",
    }
)
# secrets recognisable inside free text: bearer headers, Google's token shapes, calsync's keys,
# `name=value` / `"name": "value"` pairs with a secret name
_PATTERNS = [
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"),
    re.compile(r"ya29\.[A-Za-z0-9._-]+"),
    re.compile(r"1//0[A-Za-z0-9._-]+"),
    re.compile(r"4/0[A-Za-z0-9._-]+"),
    re.compile(r"(?i)4%2F0[A-Za-z0-9._%-]+"),  # the same, URL-encoded (an authorization code)
    # the whole query string of an OAuth callback (code, state, scope, error...), in any path
    # that has one: the access log prints it as the browser sent it (URL-encoded)
    re.compile(r"(?i)(/oauth[^\s?\"']*/callback\?)[^\s\"']*"),
    # an OAuth `code` or `state` parameter in any other URL
    re.compile(r"(?i)([?&](?:code|state)=)[^&\s\"']+"),
    re.compile(r"csk_[A-Za-z0-9._-]+"),
    # a portal link's one-time token (web/pages/portal.py), as the access log prints its path
    re.compile(r"(/portal/)[A-Za-z0-9_-]{16,}"),
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S),
    re.compile(
        r"(?i)((?:access_token|refresh_token|id_token|client_secret|code_verifier|token|"
        r"password|api_key|assertion)[\"']?\s*[:=]\s*[\"']?)[^\s\"'&,;}]+"
    ),
]


def _is_secret_key(name: str) -> bool:
    lowered = name.lower().replace("-", "_")
    return lowered in SECRET_KEYS or lowered.replace("_", "-") in SECRET_KEYS


def redact_text(text: str) -> str:
    for pattern in _PATTERNS:
        if pattern.groups:
            text = pattern.sub(lambda m: m.group(1) + MASK, text)
        else:
            text = pattern.sub(MASK, text)
    return text


def redact_value(value: Any, depth: int = 0) -> Any:
    if depth > 6:
        return value
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, bytes):
        return redact_text(value.decode("utf-8", "replace"))
    if isinstance(value, Mapping):
        return {
            k: (
                MASK
                if isinstance(k, str) and _is_secret_key(k) and v
                else redact_value(v, depth + 1)
            )
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact_value(v, depth + 1) for v in value]
    return value


def redact(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """structlog processor: mask secret fields and secret-looking text everywhere."""
    for name, value in list(event_dict.items()):
        if _is_secret_key(name) and value:
            event_dict[name] = MASK
        else:
            event_dict[name] = redact_value(value)
    return event_dict


def _shared() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.ExtraAdder(),
    ]


def setup(level: str = "INFO", fmt: str = "json", stream: Any = None) -> logging.Handler:
    """Route all logging through structlog (JSON or console), secrets redacted; idempotent."""
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared(),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact,
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    handler.set_name("calsync")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "calsync"]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is noise
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    structlog.configure(
        processors=[*_shared(), structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    return handler
