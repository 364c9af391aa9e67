"""The callback URL policy: syntax, odd IP literals, refused ranges, allowlists, DNS answers.

Delivery-time enforcement (rebinding, redirects, pinned connections) is in ``test_delivery.py``.
"""

from __future__ import annotations

import ipaddress
import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.callbacks.egress import (
    CallbackPolicy,
    CallbackRefused,
    parse_callback_url,
    system_resolve,
)
from service.settings import Settings
from tests.conftest import FakeDNS

PUBLIC_V4 = "93.184.216.34"
PUBLIC_V6 = "2606:4700::1111"


def _policy(
    networks: tuple[str, ...] = (), hosts: tuple[str, ...] = (), dns: FakeDNS | None = None
) -> CallbackPolicy:
    settings = Settings(callback_allowed_networks=networks, callback_allowed_hosts=hosts)
    return CallbackPolicy.from_settings(settings, dns or FakeDNS())


# The SSRF suite of issue 6: each URL is refused by default and allowed by the named setting.
SSRF_CASES = [
    ("http://127.0.0.1/hook", ("127.0.0.0/8",)),
    ("http://localhost/hook", ("127.0.0.0/8",)),
    ("http://[::1]/hook", ("::1/128",)),
    ("http://0.0.0.0/hook", ("0.0.0.0/32",)),
    ("http://169.254.169.254/latest/meta-data", ("169.254.169.254/32",)),
    ("http://[::ffff:127.0.0.1]/hook", ("127.0.0.0/8",)),
    ("http://2130706433/hook", ("127.0.0.0/8",)),
    ("http://0x7f.1/hook", ("127.0.0.0/8",)),
    ("http://127.1/hook", ("127.0.0.0/8",)),
    ("http://127.0.0.1./hook", ("127.0.0.0/8",)),
]


@pytest.mark.parametrize(("url", "networks"), SSRF_CASES)
async def test_ssrf_target_is_refused_by_default(url: str, networks: tuple[str, ...]) -> None:
    with pytest.raises(CallbackRefused):
        await _policy().check_url(url)


@pytest.mark.parametrize(("url", "networks"), SSRF_CASES)
async def test_ssrf_target_is_allowed_when_its_network_is_configured(
    url: str, networks: tuple[str, ...]
) -> None:
    assert (await _policy(networks=networks).check_url(url)).startswith("http://")


@pytest.mark.parametrize(
    ("url", "category"),
    [
        ("http://127.0.0.1/", "loopback"),
        ("http://[::1]/", "loopback"),
        ("http://0.0.0.0/", "unspecified"),
        ("http://[::]/", "unspecified"),
        ("http://169.254.169.254/", "link-local"),
        ("http://[fe80::1]/", "link-local"),
        ("http://224.0.0.1/", "multicast"),
        ("http://[ff02::1]/", "multicast"),
        ("http://255.255.255.255/", "broadcast"),
        ("http://240.0.0.1/", "reserved"),
        ("http://10.1.2.3/", "private"),
        ("http://172.16.0.1/", "private"),
        ("http://192.168.1.1/", "private"),
        ("http://100.64.0.1/", "private"),
        ("http://[fc00::1]/", "private"),
        ("http://192.0.2.1/", "special-purpose"),
        ("http://[::ffff:10.0.0.1]/", "private"),
        ("http://[::127.0.0.1]/", "loopback"),
        ("http://[64:ff9b::a9fe:a9fe]/", "link-local"),
        ("http://[2002:7f00:1::]/", "loopback"),
    ],
)
async def test_refusal_names_the_address_category(url: str, category: str) -> None:
    with pytest.raises(CallbackRefused, match=category):
        await _policy().check_url(url)


# Every range of the IANA special-purpose registries that is not globally reachable, plus the
# deprecated site-local fec0::/10: one address inside each.
NOT_GLOBAL_RANGES = {
    "0.0.0.0/8": "0.1.2.3",
    "10.0.0.0/8": "10.9.8.7",
    "100.64.0.0/10": "100.127.0.1",
    "127.0.0.0/8": "127.3.2.1",
    "169.254.0.0/16": "169.254.1.1",
    "172.16.0.0/12": "172.31.255.1",
    "192.0.0.0/24": "192.0.0.8",
    "192.0.2.0/24": "192.0.2.55",
    "192.88.99.0/24": "192.88.99.1",
    "192.168.0.0/16": "192.168.100.1",
    "198.18.0.0/15": "198.19.0.1",
    "198.51.100.0/24": "198.51.100.7",
    "203.0.113.0/24": "203.0.113.9",
    "224.0.0.0/4": "239.1.1.1",
    "240.0.0.0/4": "250.1.1.1",
    "255.255.255.255/32": "255.255.255.255",
    "::/128": "::",
    "::1/128": "::1",
    "::ffff:0:0/96": "::ffff:192.168.0.1",
    "64:ff9b:1::/48": "64:ff9b:1::1",
    "100::/64": "100::1",
    "2001::/23": "2001:2::1",
    "2001:db8::/32": "2001:db8::1",
    "3fff::/20": "3fff::1",
    "fc00::/7": "fd12:3456::1",
    "fe80::/10": "fe80::1",
    "fec0::/10": "fec0::1",
    "ff00::/8": "ff0e::1",
}


@pytest.mark.parametrize(("network", "address"), NOT_GLOBAL_RANGES.items())
def test_an_address_that_is_not_globally_routable_is_refused(network: str, address: str) -> None:
    with pytest.raises(CallbackRefused):
        _policy().check_address(address)


@pytest.mark.parametrize(("network", "address"), NOT_GLOBAL_RANGES.items())
def test_a_not_globally_routable_address_is_allowed_when_its_network_is_listed(
    network: str, address: str
) -> None:
    _policy(networks=(network,)).check_address(address)


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "192.0.1.1", "2606:4700::1111", "2a00:1450:4001::1", "2c0f:fb50::1"]
)
def test_a_globally_routable_address_is_allowed(address: str) -> None:
    _policy().check_address(address)


async def test_a_site_local_callback_is_refused_by_name() -> None:
    with pytest.raises(CallbackRefused, match="site-local"):
        await _policy().check_url("http://[fec0::1]/hook")


@pytest.mark.parametrize(
    "url", [f"https://{PUBLIC_V4}/hook", f"https://[{PUBLIC_V6}]/hook", "http://[::ffff:8.8.8.8]/"]
)
async def test_public_address_is_accepted(url: str) -> None:
    assert await _policy().check_url(url)


async def test_private_network_is_allowed_by_configuration() -> None:
    assert await _policy(networks=("10.0.0.0/8",)).check_url("http://10.1.2.3/h")


async def test_allowing_one_network_does_not_allow_another() -> None:
    with pytest.raises(CallbackRefused, match="private"):
        await _policy(networks=("10.0.0.0/8",)).check_url("http://192.168.1.1/h")


async def test_odd_ipv4_literal_is_normalized() -> None:
    url = await _policy(networks=("127.0.0.0/8",)).check_url("http://0x7f.1:8080/a?b=1")
    assert url == "http://127.0.0.1:8080/a?b=1"


async def test_host_name_is_lower_cased_and_idna_encoded() -> None:
    dns = FakeDNS({"xn--mller-kva.example": [PUBLIC_V4]})
    assert await _policy(dns=dns).check_url("https://Müller.Example/x") == (
        "https://xn--mller-kva.example/x"
    )


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/", "scheme must be http or https"),
        ("file:///etc/passwd", "scheme must be http or https"),
        ("http:///path-only", "no host"),
        ("https://user:pw@example.com/", "credentials"),
        ("https://example.com/" + "a" * 2048, "longer than 2048"),
        ("https://exa mple.com/", "whitespace"),
        ("https://example.com\\@127.0.0.1/", "backslashes"),
        ("http://1.2.3.4.5/", "neither a valid IP address nor a host name"),
        ("http://300.1.1/", "not a valid IPv4 address"),
        ("http://[fe80::1%25eth0]/", "zone identifiers"),
        ("http://example.com:0/", "port 0"),
        ("http://exa%20mple.com/", "not a valid host name"),
        ("not a url at all", "whitespace"),
    ],
)
async def test_malformed_url_is_refused_with_reason(url: str, reason: str) -> None:
    with pytest.raises(CallbackRefused, match=reason):
        await _policy().check_url(url)


async def test_refusal_never_echoes_url_credentials() -> None:
    with pytest.raises(CallbackRefused) as info:
        await _policy().check_url("https://admin:hunter2@example.com/")
    assert "hunter2" not in info.value.reason


async def test_name_resolving_only_to_refused_addresses_is_refused() -> None:
    dns = FakeDNS({"evil.example.com": ["127.0.0.1", "10.0.0.5"]})
    with pytest.raises(CallbackRefused, match="resolves only to refused addresses"):
        await _policy(dns=dns).check_url("https://evil.example.com/hook")


async def test_name_with_a_public_address_is_accepted() -> None:
    dns = FakeDNS({"hooks.example.com": ["127.0.0.1", PUBLIC_V4]})
    assert await _policy(dns=dns).check_url("https://hooks.example.com/h")


async def test_only_permitted_addresses_are_connected_to() -> None:
    dns = FakeDNS({"hooks.example.com": ["127.0.0.1", PUBLIC_V4, "::1", PUBLIC_V6]})
    addresses = await _policy(dns=dns).permitted_addresses("hooks.example.com")
    assert [str(a) for a in addresses] == [PUBLIC_V4, PUBLIC_V6]


async def test_name_that_does_not_resolve_is_refused_at_registration() -> None:
    with pytest.raises(CallbackRefused, match="could not be resolved"):
        await _policy().check_url("https://no-such-host.example.com/")


async def test_rebinding_name_is_refused_once_it_points_to_loopback() -> None:
    dns = FakeDNS({"rebind.example.com": [PUBLIC_V4]})
    policy = _policy(dns=dns)
    assert await policy.check_url("https://rebind.example.com/h")
    dns.records["rebind.example.com"] = ["127.0.0.1"]
    with pytest.raises(CallbackRefused, match=r"127\.0\.0\.1 is loopback"):
        await policy.permitted_addresses("rebind.example.com")


async def test_localhost_is_loopback_whatever_dns_says() -> None:
    dns = FakeDNS({"app.localhost": [PUBLIC_V4]})
    with pytest.raises(CallbackRefused, match="loopback"):
        await _policy(dns=dns).check_url("http://app.localhost/")
    assert dns.asked == []


async def test_allowed_host_may_resolve_to_private_addresses() -> None:
    dns = FakeDNS({"billing.internal": ["10.0.0.7"]})
    policy = _policy(hosts=("billing.internal",), dns=dns)
    assert [str(a) for a in await policy.permitted_addresses("billing.internal")] == ["10.0.0.7"]


async def test_allowed_host_is_accepted_without_dns_at_registration() -> None:
    dns = FakeDNS()
    assert await _policy(hosts=("billing.internal",), dns=dns).check_url("http://billing.internal/")
    assert dns.asked == []


async def test_wildcard_allowed_host_matches_one_label_below_only() -> None:
    policy = _policy(hosts=("*.svc.cluster.local",))
    assert policy.host_allowed("hooks.team-a.svc.cluster.local") is False
    assert policy.host_allowed("hooks.svc.cluster.local") is True
    assert policy.host_allowed("svc.cluster.local") is False


async def test_allowed_host_does_not_allow_other_names() -> None:
    dns = FakeDNS({"other.internal": ["10.0.0.8"]})
    with pytest.raises(CallbackRefused, match="private"):
        await _policy(hosts=("billing.internal",), dns=dns).check_url("http://other.internal/")


def test_mapped_address_is_allowed_by_its_ipv4_network() -> None:
    _policy(networks=("10.0.0.0/8",)).check_address("::ffff:10.0.0.1")


def test_check_address_refuses_metadata_service() -> None:
    with pytest.raises(CallbackRefused, match=r"169\.254\.169\.254 is link-local"):
        _policy().check_address("169.254.169.254")


async def test_system_resolver_reads_hosts_file() -> None:
    assert "127.0.0.1" in await system_resolve("localhost")


def _spelled(value: int, style: str) -> str:
    return {"dec": str(value), "oct": f"0{value:o}", "hex": f"0x{value:x}"}[style]


numeric_hosts = st.lists(
    st.tuples(st.integers(0, 255) | st.integers(0, 2**32), st.sampled_from(["dec", "oct", "hex"])),
    min_size=1,
    max_size=4,
).map(lambda parts: ".".join(_spelled(v, style) for v, style in parts))


@given(numeric_hosts)
def test_numeric_host_means_what_inet_aton_means(host: str) -> None:
    try:
        meant = ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        meant = None
    try:
        seen = parse_callback_url(f"http://{host}/").address
    except CallbackRefused:
        return
    # Never a different address, and never a name when C would read an address.
    assert seen == meant or meant is None
    assert seen is not None


@given(st.sampled_from(["http://", "https://", "http://[", "http://a@", ""]), st.text(max_size=40))
def test_any_text_is_a_target_or_a_clear_refusal(prefix: str, rest: str) -> None:
    reason = ""
    try:
        target = parse_callback_url(prefix + rest)
    except CallbackRefused as exc:
        reason = exc.reason
    else:
        assert target.url.startswith(("http://", "https://"))
        return
    assert reason


async def test_a_port_outside_the_allowlist_is_refused() -> None:
    policy = CallbackPolicy(resolve=FakeDNS(), allowed_ports=(443,))
    assert await policy.check_url(f"https://{PUBLIC_V4}/hook")
    with pytest.raises(CallbackRefused, match="port 8443"):
        await policy.check_url(f"https://{PUBLIC_V4}:8443/hook")
    with pytest.raises(CallbackRefused, match="port 80"):
        await policy.check_url(f"http://{PUBLIC_V4}/hook")


async def test_without_a_port_allowlist_any_port_is_fine() -> None:
    assert await _policy().check_url(f"http://{PUBLIC_V4}:8080/hook")
