"""Typed, immutable settings parsed once from the environment.

Every variable the service reads is declared once, on its ``Settings`` field (``ENV_VARS`` and the
README's table are derived from there); nothing else in the code base reads ``os.environ`` for
configuration. A malformed value raises ``SettingsError`` naming the variable,
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
from typing import Annotated, Any, Final, NamedTuple, get_args, get_type_hints
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


class _Var(NamedTuple):
    """How one setting is configured: its variable, the parser of its text, a one-line doc."""

    env: str
    parse: Callable[[str], Any]
    doc: str


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Runtime configuration. Build it with ``Settings.from_env()``.

    Each field is declared once: its type, its default, and (``_Var``) its environment variable,
    parser and one-line doc, from which ``ENV_VARS`` and the README's table are derived. That
    makes the class long (25 settings, a few lines each), by design: one place per fact.
    """

    redis_url: Annotated[
        str,
        _Var(
            "REDIS_URL",
            _redis_url,
            "state and queue; `rediss://` for TLS; "
            "`redis+sentinel://[:password@]host:26379[,host:port…]/service_name[/db]"
            "[?sentinel_password=…]` "
            "finds the primary through Sentinel (again after a failover)",
        ),
    ] = "redis://127.0.0.1:6379/0"
    redis_timeout_s: Annotated[
        float,
        _Var(
            "REDIS_TIMEOUT_S",
            _positive_float,
            "per Redis command and connection attempt; the API answers 503 beyond it",
        ),
    ] = 5.0
    key_prefix: Annotated[
        str,
        _Var(
            "REDIS_KEY_PREFIX",
            _key_prefix,
            "prefix of every key (several deployments can share a Redis)",
        ),
    ] = "ocr-relay:"
    monite_base_url: Annotated[
        str,
        _Var("MONITE_BASE_URL", _http_url, "Monite API root, including `/v1`"),
    ] = "https://api.sandbox.monite.com/v1"
    monite_client_id: Annotated[
        str | None,
        _Var(
            "MONITE_CLIENT_ID",
            _identity,
            "partner client id (`client_credentials` grant; with `MONITE_CLIENT_SECRET`)",
        ),
    ] = None
    monite_client_secret: Annotated[
        str | None,
        _Var("MONITE_CLIENT_SECRET", _identity, "partner client secret (with `MONITE_CLIENT_ID`)"),
    ] = None
    monite_token: Annotated[
        str | None,
        _Var("MONITE_TOKEN", _identity, "a static bearer token instead of credentials"),
    ] = None
    monite_api_version: Annotated[
        str,
        _Var("MONITE_API_VERSION", _api_version, "sent as `x-monite-version`"),
    ] = "2024-05-25"
    monite_rate_limit: Annotated[
        float,
        _Var(
            "MONITE_RATE_LIMIT",
            _positive_float,
            "requests/s budget shared by all workers (Monite allows ~30)",
        ),
    ] = 25.0
    monite_webhook_secret: Annotated[
        str | None,
        _Var(
            "MONITE_WEBHOOK_SECRET",
            _identity,
            "verifies Monite's `ocr_task.finished` pushes (sent only for tasks created for an "
            "entity: give `entity_id`); unset = push intake off",
        ),
    ] = None
    monite_timeout_s: Annotated[
        float,
        _Var("MONITE_TIMEOUT_S", _positive_float, "per Monite request"),
    ] = 15.0
    api_keys: Annotated[
        tuple[ApiClient, ...],
        _Var(
            "API_KEYS",
            parse_api_keys,
            "`client:sha256:<hex>,…` or `@/path/to/file` (one entry per line); see `ocr-relay "
            "hash-key`",
        ),
    ] = ()
    console_keys: Annotated[
        tuple[ApiClient, ...],
        _Var(
            "CONSOLE_KEYS",
            parse_api_keys,
            "operator keys of the web console at `/console`, `operator:sha256:<hex>,…` or "
            "`@/path/to/file` (as `API_KEYS`, never the same keys); unset = console off",
        ),
    ] = ()
    console_session_s: Annotated[
        int,
        _Var("CONSOLE_SESSION_S", _positive_int, "how long a console sign-in lasts"),
    ] = 8 * 3600
    callback_allowed_networks: Annotated[
        tuple[str, ...],
        _Var(
            "CALLBACK_ALLOWED_NETWORKS",
            _networks,
            "CIDRs callbacks may reach besides public addresses (e.g. `10.0.0.0/8`)",
        ),
    ] = ()
    callback_allowed_hosts: Annotated[
        tuple[str, ...],
        _Var(
            "CALLBACK_ALLOWED_HOSTS",
            _hosts,
            "host names callbacks may reach (`*.svc.internal` matches one label)",
        ),
    ] = ()
    callback_allowed_ports: Annotated[
        tuple[int, ...],
        _Var(
            "CALLBACK_ALLOWED_PORTS",
            _ports,
            "if set, the only ports callbacks may use (e.g. `443`)",
        ),
    ] = ()
    poll_schedule_s: Annotated[
        tuple[float, ...],
        _Var(
            "POLL_SCHEDULE_S",
            _schedule,
            "seconds between polls of one task; the last value repeats",
        ),
    ] = DEFAULT_POLL_SCHEDULE
    delivery_schedule_s: Annotated[
        tuple[float, ...],
        _Var("DELIVERY_SCHEDULE_S", _schedule, "delay before each delivery attempt; then give up"),
    ] = DEFAULT_DELIVERY_SCHEDULE
    delivery_timeout_s: Annotated[
        float,
        _Var("DELIVERY_TIMEOUT_S", _positive_float, "per delivery attempt"),
    ] = 10.0
    watch_deadline_s: Annotated[
        int,
        _Var(
            "WATCH_DEADLINE_S",
            _positive_int,
            "default deadline of a watch (a watch may ask for 1 s … 7 days)",
        ),
    ] = 86400
    watch_retention_s: Annotated[
        int,
        _Var(
            "WATCH_RETENTION_S",
            _positive_int,
            "how long a finished watch, its event and attempt log are kept (30 days)",
        ),
    ] = 30 * 86400
    api_rate_limit_per_minute: Annotated[
        int,
        _Var("API_RATE_LIMIT_PER_MINUTE", _positive_int, "per API client"),
    ] = 600
    max_upload_bytes: Annotated[
        int,
        _Var(
            "MAX_UPLOAD_BYTES",
            _positive_int,
            "largest document file `POST /v1/documents` accepts (413 above it; JSON bodies: 64 "
            "KiB)",
        ),
    ] = 20 * 1024 * 1024
    secrets_key: Annotated[
        tuple[bytes, ...],
        _Var(
            "SECRETS_KEY",
            _secrets_keys,
            "base64 AES-256 keys sealing webhook secrets at rest, `new,old`: the first seals, all "
            "unseal; see docs/security.md",
        ),
    ] = ()
    worker_metrics_port: Annotated[
        int,
        _Var(
            "WORKER_METRICS_PORT",
            _port,
            "a worker serves its Prometheus metrics (polls, deliveries, Monite calls) on this port",
        ),
    ] = 0
    log_level: Annotated[
        str,
        _Var("LOG_LEVEL", _log_level, "JSON logs on stdout"),
    ] = "INFO"

    def __repr__(self) -> str:
        # Secrets never reach logs, even through an accidental repr().
        shown = {
            f: getattr(self, f)
            for f in self.__struct_fields__
            if f not in _SECRET_FIELDS and f not in ("api_keys", "console_keys")
        }
        shown["api_keys"] = tuple(c.name for c in self.api_keys)
        shown["console_keys"] = tuple(c.name for c in self.console_keys)
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
        client_digests = {c.key_sha256 for c in settings.api_keys}
        shared = [o.name for o in settings.console_keys if o.key_sha256 in client_digests]
        if shared:
            # An API client's key must not also open the cross-client console.
            raise SettingsError(
                "CONSOLE_KEYS", f"{', '.join(shared)}: an operator key must not be an API key"
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
            raise ValueError("each entry must look like name:sha256:<64 hex digits>")
        try:
            key_hash = bytes.fromhex(digest)
        except ValueError:
            raise ValueError(f"entry for {name!r} has a digest that is not hex") from None
        if len(key_hash) != hashlib.sha256().digest_size:
            raise ValueError(f"entry for {name!r} needs 64 hex digits of SHA-256")
        if name in seen:
            raise ValueError(f"{name!r} is listed twice")
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


def _declared() -> dict[str, tuple[str, _Var, Any]]:
    """Every setting by variable name: its field, declaration and default."""
    hints = get_type_hints(Settings, include_extras=True)
    declared: dict[str, tuple[str, _Var, Any]] = {}
    for field in msgspec.structs.fields(Settings):
        var = next(m for m in get_args(hints[field.name])[1:] if isinstance(m, _Var))
        declared[var.env] = (field.name, var, field.default)
    return declared


_DECLARED: Final = _declared()
ENV_VARS: Final[dict[str, tuple[str, Callable[[str], Any]]]] = {
    env: (field, var.parse) for env, (field, var, _) in _DECLARED.items()
}
"""Every variable the service reads: its ``Settings`` field and parser."""


def settings_table() -> str:
    """The README's configuration table, made from the declarations (a test keeps them equal)."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for env, (_, var, default) in _DECLARED.items():
        lines.append(f"| `{env}` | {_shown(default)} | {var.doc} |")
    return "\n".join(lines) + "\n"


def _shown(default: Any) -> str:
    if default is None or default == () or (isinstance(default, int) and default == 0):
        return "—"
    if isinstance(default, tuple):
        return "`" + ",".join(f"{v:g}" for v in default) + "`"
    if isinstance(default, float):
        return f"`{default:g}`"
    return f"`{default}`"
