"""``redis+sentinel://`` URLs: a Redis primary found through Redis Sentinel, which fails over.

``redis+sentinel://[[user]:password@]host[:port][,host[:port]…]/service_name[/db]
[?sentinel_password=…]``: the hosts are sentinels (port 26379 by default), ``service_name`` the
name they monitor the primary under, the credentials those of the primary, and
``sentinel_password`` the sentinels' own (``requirepass`` in their configuration), if any. redis-py
reads no such URL, so this module parses it for the settings (validation) and ``queue.connect``.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import parse_qs, unquote

import msgspec

SCHEME: Final = "redis+sentinel"
DEFAULT_PORT: Final = 26379


class SentinelUrl(msgspec.Struct, frozen=True, kw_only=True):
    """The parts of a ``redis+sentinel://`` URL."""

    sentinels: tuple[tuple[str, int], ...]
    service_name: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = None

    def __repr__(self) -> str:
        return (
            f"SentinelUrl(sentinels={self.sentinels!r}, service_name={self.service_name!r}, "
            f"db={self.db}, password={'<redacted>' if self.password else None}, "
            f"sentinel_password={'<redacted>' if self.sentinel_password else None})"
        )


def parse_sentinel_url(url: str) -> SentinelUrl | None:
    """The parts of a ``redis+sentinel://`` URL; ``None`` for any other scheme.

    Raises ``ValueError`` naming what is malformed (never echoing the password).
    """
    scheme, separator, rest = url.partition("://")
    if scheme != SCHEME or not separator:
        return None
    rest, _, query = rest.partition("?")
    try:
        options = parse_qs(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise ValueError("options must read ?name=value&…") from None  # not echoing a password
    unknown = sorted(set(options) - {"sentinel_password"})
    if unknown:
        raise ValueError(f"unknown options {unknown}: only sentinel_password is understood")
    location, _, path = rest.partition("/")
    userinfo, at, hosts = location.rpartition("@")
    username, colon, password = userinfo.partition(":")
    sentinels = tuple(_sentinel(host) for host in hosts.split(","))
    service_name, _, db = path.partition("/")
    if not service_name:
        raise ValueError("no service name: expected redis+sentinel://host:port/service_name[/db]")
    if db and not db.isdigit():
        raise ValueError(f"database must be a number, got {db!r}")
    return SentinelUrl(
        sentinels=sentinels,
        service_name=unquote(service_name),
        db=int(db or 0),
        username=unquote(username) or None if at else None,
        password=unquote(password) or None if at and colon else None,
        sentinel_password=options.get("sentinel_password", [""])[-1] or None,
    )


def _sentinel(address: str) -> tuple[str, int]:
    if address.startswith("["):  # [IPv6]:port
        host, _, port = address[1:].partition("]")
        port = port.removeprefix(":")
    else:
        host, _, port = address.partition(":")
    if not host:
        raise ValueError(f"a sentinel without host in {address!r}")
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        raise ValueError(f"sentinel port must be 1-65535, got {port!r}")
    return host, int(port) if port else DEFAULT_PORT
