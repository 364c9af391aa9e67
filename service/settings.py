"""Typed, immutable settings parsed once from the environment.

Every variable the service reads is declared in ``ENV_VARS``; nothing else in the code base reads
``os.environ`` for configuration. A malformed value raises ``SettingsError`` naming the variable,
which the CLI turns into a one-line message and exit code 2.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

import msgspec

from service.sentinel_url import parse_sentinel_url

# Credentials the built-in simulator accepts when none are configured (documented in the README).
DEV_MONITE_CLIENT_ID: Final = "6f0e3a4c-5d1b-4c8e-9a7f-0d2b1e3c4a5f"
DEV_MONITE_CLIENT_SECRET: Final = "simulator-secret"  # noqa: S105 - public dev default, not a secret

SECRETS_KEY_BYTES: Final = 32

DEFAULT_POLL_SCHEDULE: Final = (1.0, 2.0, 3.0, 5.0, 7.5, 11.25, 16.9, 25.3, 38.0, 57.0, 60.0)
DEFAULT_DELIVERY_SCHEDULE: Final = (0.0, 5.0, 30.0, 120.0, 600.0, 1800.0, 3600.0, 10800.0)


class SettingsError(ValueError):
    """A configuration value is missing or malformed; the message names the variable."""

    def __init__(self, variable: str, reason: str) -> None:
        super().__init__(f"{variable}: {reason}")
        self.variable = variable
        self.reason = reason


class ApiClient(msgspec.Struct, frozen=True):
    """One configured API client: its name and the SHA-256 digest of its key."""

    name: str
    key_sha256: bytes

    def __repr__(self) -> str:
        return f"ApiClient(name={self.name!r}, key_sha256=<redacted>)"


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Runtime configuration. Build it with ``Settings.from_env()``; fields mirror ``ENV_VARS``."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_timeout_s: float = 5.0
    key_prefix: str = "ocr-relay:"
    monite_base_url: str = "https://api.sandbox.monite.com/v1"
    monite_client_id: str | None = None
    monite_client_secret: str | None = None
    monite_token: str | None = None
    monite_api_version: str = "2024-05-25"
    monite_rate_limit: float = 25.0
    monite_webhook_secret: str | None = None
    monite_timeout_s: float = 15.0
    api_keys: tuple[ApiClient, ...] = ()
    callback_allowed_networks: tuple[str, ...] = ()
    callback_allowed_hosts: tuple[str, ...] = ()
    callback_allowed_ports: tuple[int, ...] = ()
    poll_schedule_s: tuple[float, ...] = DEFAULT_POLL_SCHEDULE
    delivery_schedule_s: tuple[float, ...] = DEFAULT_DELIVERY_SCHEDULE
    delivery_timeout_s: float = 10.0
    watch_deadline_s: int = 86400
    watch_retention_s: int = 30 * 86400
    api_rate_limit_per_minute: int = 600
    max_upload_bytes: int = 20 * 1024 * 1024
    # AES-256 keys sealing webhook secrets at rest: the first seals, all unseal (key rotation).
    secrets_key: tuple[bytes, ...] = ()
    worker_metrics_port: int = 0
    log_level: str = "INFO"

    def __repr__(self) -> str:
        # Secrets never reach logs, even through an accidental repr().
        shown = {
            f: getattr(self, f)
            for f in self.__struct_fields__
            if f not in _SECRET_FIELDS and f != "api_keys"
        }
        shown["api_keys"] = tuple(c.name for c in self.api_keys)
        shown["redis_url"] = without_credentials(self.redis_url)  # may hold Redis's password
        for f in _SECRET_FIELDS:
            shown[f] = "<set>" if getattr(self, f) else None
        body = ", ".join(f"{k}={v!r}" for k, v in shown.items())
        return f"Settings({body})"

    __str__ = __repr__

    @property
    def monite_has_credentials(self) -> bool:
        """True when real credentials (or a static token) are configured."""
        return bool(self.monite_token or (self.monite_client_id and self.monite_client_secret))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Parse the environment (``os.environ`` by default); raises ``SettingsError``."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for var, (field, parse) in ENV_VARS.items():
            raw = env.get(var)
            if raw is None or raw.strip() == "":
                continue
            try:
                values[field] = parse(raw.strip())
            except SettingsError:
                raise
            except ValueError as exc:
                raise SettingsError(var, str(exc)) from None
        settings = cls(**values)
        if bool(settings.monite_client_id) != bool(settings.monite_client_secret):
            raise SettingsError(
                "MONITE_CLIENT_SECRET" if settings.monite_client_id else "MONITE_CLIENT_ID",
                "MONITE_CLIENT_ID and MONITE_CLIENT_SECRET must be set together",
            )
        return settings


_SECRET_FIELDS: Final = (
    "monite_client_secret",
    "monite_token",
    "monite_webhook_secret",
    "secrets_key",
)


def without_credentials(url: str) -> str:
    """``url`` with ``user:password@`` and ``…password=`` values masked, for messages (a Redis URL
    may hold passwords)."""
    parts = urlsplit(url)
    if "@" in parts.netloc:
        parts = parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2])
    return urlunsplit(parts._replace(query=_PASSWORD_OPTION.sub(r"\1***", parts.query)))


_PASSWORD_OPTION: Final = re.compile(r"([^&=]*password=)[^&]*")


def _redis_url(raw: str) -> str:
    if parse_sentinel_url(raw) is not None:  # raises if malformed
        return raw
    parts = urlsplit(raw)
    shown = without_credentials(raw)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError(
            f"expected redis://host:port/db, rediss://, unix:// or redis+sentinel://, got {shown!r}"
        )
    if parts.scheme != "unix" and not parts.hostname:
        raise ValueError(f"no host in {shown!r}")
    path = parts.path.lstrip("/")
    if parts.scheme != "unix" and path and not path.isdigit():
        raise ValueError(f"database must be a number, got {path!r}")
    return raw


def _http_url(raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http(s) URL, got {without_credentials(raw)!r}")
    return raw.rstrip("/")


def _positive_float(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"expected a number, got {raw!r}") from None
    if not value > 0 or value != value or value == float("inf"):
        raise ValueError(f"expected a positive number, got {raw!r}")
    return value


def _positive_int(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"expected a whole number, got {raw!r}") from None
    if value <= 0:
        raise ValueError(f"expected a positive whole number, got {raw!r}")
    return value


def _port(raw: str) -> int:
    value = _positive_int(raw)
    if value > 65535:
        raise ValueError(f"expected a TCP port (1-65535), got {raw!r}")
    return value


def _ports(raw: str) -> tuple[int, ...]:
    return tuple(_port(part) for part in _csv(raw))


def _schedule(raw: str) -> tuple[float, ...]:
    try:
        steps = tuple(float(part) for part in raw.split(","))
    except ValueError:
        raise ValueError(f"expected comma-separated seconds, got {raw!r}") from None
    if not steps or any(s < 0 or s != s or s == float("inf") for s in steps):
        raise ValueError(f"expected comma-separated non-negative seconds, got {raw!r}")
    return steps


def _csv(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _networks(raw: str) -> tuple[str, ...]:
    out = []
    for part in _csv(raw):
        try:
            out.append(str(ipaddress.ip_network(part, strict=False)))
        except ValueError:
            raise ValueError(f"{part!r} is not a CIDR network") from None
    return tuple(out)


def _hosts(raw: str) -> tuple[str, ...]:
    return tuple(h.lower().rstrip(".") for h in _csv(raw))


def parse_api_keys(raw: str) -> tuple[ApiClient, ...]:
    """Parse ``name:sha256:<hex>`` entries, or ``@/path/to/file`` holding one entry per line."""
    if raw.startswith("@"):
        try:
            with open(raw[1:], encoding="utf-8") as fh:
                entries = [ln.strip() for ln in fh if ln.strip() and not ln.startswith("#")]
        except OSError as exc:
            raise ValueError(f"cannot read key file {raw[1:]!r}: {exc.strerror}") from None
    else:
        entries = list(_csv(raw))
    clients: list[ApiClient] = []
    seen: set[str] = set()
    for entry in entries:
        name, _, rest = entry.partition(":")
        algo, _, digest = rest.partition(":")
        if not name or algo != "sha256":
            raise ValueError("each entry must look like client_name:sha256:<64 hex digits>")
        try:
            key_hash = bytes.fromhex(digest)
        except ValueError:
            raise ValueError(f"entry for {name!r} has a digest that is not hex") from None
        if len(key_hash) != hashlib.sha256().digest_size:
            raise ValueError(f"entry for {name!r} needs 64 hex digits of SHA-256")
        if name in seen:
            raise ValueError(f"client {name!r} is listed twice")
        seen.add(name)
        clients.append(ApiClient(name=name, key_sha256=key_hash))
    return tuple(clients)


def _secrets_keys(raw: str) -> tuple[bytes, ...]:
    # Messages name the position only: the value is a key and must not reach a log line.
    keys: list[bytes] = []
    for position, part in enumerate(_csv(raw), start=1):
        try:
            key = base64.b64decode(part, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"key #{position} is not base64") from None
        if len(key) != SECRETS_KEY_BYTES:
            raise ValueError(
                f"key #{position} must be {SECRETS_KEY_BYTES} bytes of base64, got {len(key)}"
            )
        if key in keys:
            raise ValueError(f"key #{position} is listed twice")
        keys.append(key)
    return tuple(keys)


def _log_level(raw: str) -> str:
    level = raw.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ValueError(f"expected DEBUG, INFO, WARNING, ERROR or CRITICAL, got {raw!r}")
    return level


def _key_prefix(raw: str) -> str:
    if any(c.isspace() for c in raw) or len(raw) > 64:
        raise ValueError("must be at most 64 characters without spaces")
    return raw


def _identity(raw: str) -> str:
    return raw


def _api_version(raw: str) -> str:
    if len(raw) != 10 or raw[4] != "-" or raw[7] != "-":
        raise ValueError(f"expected a version date YYYY-MM-DD, got {raw!r}")
    return raw


ENV_VARS: Final[dict[str, tuple[str, Callable[[str], Any]]]] = {
    "REDIS_URL": ("redis_url", _redis_url),
    "REDIS_KEY_PREFIX": ("key_prefix", _key_prefix),
    "REDIS_TIMEOUT_S": ("redis_timeout_s", _positive_float),
    "MONITE_BASE_URL": ("monite_base_url", _http_url),
    "MONITE_CLIENT_ID": ("monite_client_id", _identity),
    "MONITE_CLIENT_SECRET": ("monite_client_secret", _identity),
    "MONITE_TOKEN": ("monite_token", _identity),
    "MONITE_API_VERSION": ("monite_api_version", _api_version),
    "MONITE_RATE_LIMIT": ("monite_rate_limit", _positive_float),
    "MONITE_WEBHOOK_SECRET": ("monite_webhook_secret", _identity),
    "MONITE_TIMEOUT_S": ("monite_timeout_s", _positive_float),
    "API_KEYS": ("api_keys", parse_api_keys),
    "CALLBACK_ALLOWED_NETWORKS": ("callback_allowed_networks", _networks),
    "CALLBACK_ALLOWED_HOSTS": ("callback_allowed_hosts", _hosts),
    "CALLBACK_ALLOWED_PORTS": ("callback_allowed_ports", _ports),
    "POLL_SCHEDULE_S": ("poll_schedule_s", _schedule),
    "DELIVERY_SCHEDULE_S": ("delivery_schedule_s", _schedule),
    "DELIVERY_TIMEOUT_S": ("delivery_timeout_s", _positive_float),
    "WATCH_DEADLINE_S": ("watch_deadline_s", _positive_int),
    "WATCH_RETENTION_S": ("watch_retention_s", _positive_int),
    "API_RATE_LIMIT_PER_MINUTE": ("api_rate_limit_per_minute", _positive_int),
    "MAX_UPLOAD_BYTES": ("max_upload_bytes", _positive_int),
    "SECRETS_KEY": ("secrets_key", _secrets_keys),
    "WORKER_METRICS_PORT": ("worker_metrics_port", _port),
    "LOG_LEVEL": ("log_level", _log_level),
}
