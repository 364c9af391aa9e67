"""Structured JSON logging on stdout.

One line per record: ``{"ts", "level", "logger", "msg", ...extra}``. Pass context with
``log.info("polled", extra={"watch_id": w, "task_id": t})``. Secrets must never be passed in; the
formatter additionally drops any extra whose name looks like a credential.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, Final

import msgspec

_STANDARD_ATTRS: Final = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys() | {"message", "asctime"}
)
_SECRET_HINTS: Final = ("secret", "token", "password", "authorization", "api_key")


class JsonFormatter(logging.Formatter):
    """Render a record as one JSON object."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key in _STANDARD_ATTRS or key.startswith("_"):
                continue
            if any(hint in key.lower() for hint in _SECRET_HINTS):
                continue
            entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return _encoder.encode(entry).decode()


def _default(obj: Any) -> str:
    return repr(obj)


_encoder = msgspec.json.Encoder(enc_hook=_default)


def configure(level: str = "INFO") -> None:
    """Send every logger's records as JSON lines to stdout (idempotent)."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs every request URL at INFO; that is noise at our volume.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("arq.worker").setLevel(logging.WARNING)
