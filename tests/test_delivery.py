"""One delivery attempt against real HTTP receivers on loopback."""

from __future__ import annotations

import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest
import standardwebhooks

from service.callbacks.attempt import (
    USER_AGENT,
    attempt_delivery,
    classify_status,
)
from service.callbacks.egress import CallbackClient, build_callback_client
from service.domain.backoff import parse_retry_after
from service.domain.delivery import AttemptResult
from service.domain.signing import generate_secret, verify_signature
from service.settings import Settings
from tests.conftest import FakeDNS, Receiver, Reply

BODY = b'{"type":"invoice.recognized","data":{"total":{"amount":"1487.50"}}}'
EVENT_ID = "evt_01hx5d0c8w"
SECRET = generate_secret()
LOOPBACK = ("127.0.0.0/8",)


MakeClient = Callable[..., CallbackClient]


@pytest.fixture
async def make_client(settings: Settings) -> AsyncIterator[MakeClient]:
    """Factory of callback clients (allowlists, resolver, trust store); all closed afterwards."""
    made: list[CallbackClient] = []

    def make(
        networks: tuple[str, ...] = (),
        hosts: tuple[str, ...] = (),
        resolver: FakeDNS | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> CallbackClient:
        configured = msgspec.structs.replace(
            settings, callback_allowed_networks=networks, callback_allowed_hosts=hosts
        )
        made.append(build_callback_client(configured, resolver, ssl_context=ssl_context))
        return made[-1]

    yield make
    for callback_client in made:
        await callback_client.close()


@pytest.fixture
def client(make_client: MakeClient) -> CallbackClient:
    """A callback client allowed to reach loopback, as a test deployment configures it."""
    return make_client(networks=LOOPBACK)


async def _deliver(client: CallbackClient, url: str, timeout_s: float = 5.0) -> AttemptResult:
    return await attempt_delivery(
        client, url=url, event_id=EVENT_ID, body=BODY, secrets=[SECRET], timeout_s=timeout_s
    )


async def test_2xx_is_delivered(client: CallbackClient, receiver: Receiver) -> None:
    receiver.script([Reply(status=204)])
    attempt = await _deliver(client, receiver.url)
    assert (attempt.outcome, attempt.status_code, attempt.error) == ("delivered", 204, None)


async def test_body_is_posted_byte_for_byte(client: CallbackClient, receiver: Receiver) -> None:
    await _deliver(client, receiver.url)
    [request] = receiver.requests
    assert (request.method, request.path, request.body) == ("POST", "/hook", BODY)


async def test_standard_webhooks_headers_are_sent(
    client: CallbackClient, receiver: Receiver
) -> None:
    await _deliver(client, receiver.url)
    headers = receiver.requests[0].headers
    assert headers["webhook-id"] == EVENT_ID
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"] == USER_AGENT == "ocr-relay/0.1.0"
    assert abs(int(headers["webhook-timestamp"]) - datetime.now(UTC).timestamp()) < 60


async def test_receiver_verifies_signature_with_official_library(
    client: CallbackClient, receiver: Receiver
) -> None:
    await _deliver(client, receiver.url)
    request = receiver.requests[0]
    standardwebhooks.Webhook(SECRET).verify(request.body, request.headers, json_parse=False)


async def test_every_secret_signs_during_rotation(
    client: CallbackClient, receiver: Receiver
) -> None:
    old, new = generate_secret(), generate_secret()
    await attempt_delivery(
        client, url=receiver.url, event_id=EVENT_ID, body=BODY, secrets=[old, new], timeout_s=5
    )
    request = receiver.requests[0]
    verify_signature(old, request.headers, request.body)
    verify_signature(new, request.headers, request.body)


async def test_webhook_id_is_stable_across_retries(
    client: CallbackClient, receiver: Receiver
) -> None:
    receiver.script([500, 500, 500, 200])
    outcomes = [(await _deliver(client, receiver.url)).outcome for _ in range(4)]
    assert outcomes == ["retry", "retry", "retry", "delivered"]
    assert {r.headers["webhook-id"] for r in receiver.requests} == {EVENT_ID}


async def test_5xx_is_retried_with_response_excerpt(
    client: CallbackClient, receiver: Receiver
) -> None:
    receiver.script([Reply(status=502, body=b"bad gateway")])
    attempt = await _deliver(client, receiver.url)
    assert (attempt.outcome, attempt.status_code) == ("retry", 502)
    assert (attempt.error, attempt.response_excerpt) == ("HTTP 502", "bad gateway")


async def test_429_carries_retry_after_seconds(client: CallbackClient, receiver: Receiver) -> None:
    receiver.script([Reply(status=429, headers={"retry-after": "120"})])
    attempt = await _deliver(client, receiver.url)
    assert (attempt.outcome, attempt.retry_after_s) == ("retry", 120.0)


async def test_410_is_gone(client: CallbackClient, receiver: Receiver) -> None:
    receiver.script([410])
    assert (await _deliver(client, receiver.url)).outcome == "gone"


async def test_other_4xx_is_rejected(client: CallbackClient, receiver: Receiver) -> None:
    receiver.script([404])
    attempt = await _deliver(client, receiver.url)
    assert (attempt.outcome, attempt.status_code, attempt.error) == ("rejected", 404, "HTTP 404")


async def test_redirect_is_not_followed(
    client: CallbackClient, make_receiver: Callable[..., Awaitable[Receiver]]
) -> None:
    first, target = await make_receiver(), await make_receiver()
    first.script([Reply(status=302, headers={"location": target.url})])
    attempt = await _deliver(client, first.url)
    assert (attempt.outcome, attempt.status_code) == ("rejected", 302)
    assert attempt.error is not None
    assert "redirects are not followed" in attempt.error
    assert (len(first.requests), len(target.requests)) == (1, 0)


async def test_slow_receiver_times_out_and_is_retried(
    client: CallbackClient, receiver: Receiver
) -> None:
    receiver.script([Reply(delay_s=3.0)])
    attempt = await _deliver(client, receiver.url, timeout_s=0.3)
    assert (attempt.outcome, attempt.status_code) == ("retry", None)
    assert attempt.error == "timeout after 0.3 s"


async def test_answer_whose_body_stalls_keeps_its_status(
    client: CallbackClient, receiver: Receiver
) -> None:
    receiver.script([Reply(status=200, body=b"ok", stall_s=3.0)])
    attempt = await _deliver(client, receiver.url, timeout_s=0.3)
    assert (attempt.outcome, attempt.status_code, attempt.response_excerpt) == (
        "delivered",
        200,
        "ok",
    )


async def test_connection_refused_is_retried(client: CallbackClient) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    attempt = await _deliver(client, f"http://127.0.0.1:{port}/hook")
    assert (attempt.outcome, attempt.status_code) == ("retry", None)
    assert attempt.error is not None
    assert attempt.error.startswith("network error")


async def test_excerpt_is_first_kib_decoded_leniently(
    client: CallbackClient, receiver: Receiver
) -> None:
    receiver.script([Reply(status=500, body=b"\xff" + b"x" * 5000)])
    attempt = await _deliver(client, receiver.url)
    assert attempt.response_excerpt is not None
    assert attempt.response_excerpt == "\ufffd" + "x" * 1023


async def test_loopback_is_refused_without_configuration(
    make_client: MakeClient, receiver: Receiver
) -> None:
    attempt = await _deliver(make_client(), receiver.url)
    assert (attempt.outcome, attempt.status_code) == ("refused", None)
    assert attempt.error is not None
    assert "loopback" in attempt.error
    assert receiver.requests == []


async def test_rebinding_to_loopback_is_refused_at_delivery(
    make_client: MakeClient, receiver: Receiver
) -> None:
    dns = FakeDNS({"hooks.example.com": ["93.184.216.34"]})
    rebinding_client = make_client(resolver=dns)
    url = f"http://hooks.example.com:{receiver.port}/hook"
    assert await rebinding_client.policy.check_url(url) == url
    dns.records["hooks.example.com"] = ["127.0.0.1"]
    attempt = await _deliver(rebinding_client, url)
    assert attempt.outcome == "refused"
    assert attempt.error is not None
    assert "127.0.0.1 is loopback" in attempt.error
    assert receiver.requests == []


async def test_name_is_pinned_to_checked_address_and_kept_as_host(
    make_client: MakeClient, receiver: Receiver
) -> None:
    dns = FakeDNS({"hooks.internal": ["127.0.0.1"]})
    named_client = make_client(networks=LOOPBACK, resolver=dns)
    attempt = await _deliver(named_client, f"http://hooks.internal:{receiver.port}/hook")
    assert attempt.outcome == "delivered"
    assert receiver.requests[0].headers["host"] == f"hooks.internal:{receiver.port}"


class Certificate:
    """A self-signed certificate for ``hooks.internal``, made by the openssl command."""

    def __init__(self, directory: Path) -> None:
        self.cert, self.key = directory / "cert.pem", directory / "key.pem"
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-subj",
                "/CN=hooks.internal",
                "-addext",
                "subjectAltName=DNS:hooks.internal",
                "-days",
                "2",
                "-keyout",
                str(self.key),
                "-out",
                str(self.cert),
            ],
            check=True,
            capture_output=True,
        )


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """One certificate for the TLS tests of this module."""
    return Certificate(tmp_path_factory.mktemp("tls"))


async def _tls_delivery(
    make_client: MakeClient,
    certificate: Certificate,
    make_receiver: Callable[..., Awaitable[Receiver]],
    name: str,
) -> tuple[AttemptResult, list[str]]:
    server_names: list[str] = []
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(certificate.cert, certificate.key)

    def record_sni(_sock: ssl.SSLObject, sni: str | None, _ctx: ssl.SSLContext) -> None:
        server_names.append(sni or "")

    server.sni_callback = record_sni
    receiver = await make_receiver(ssl_context=server)
    trust = ssl.create_default_context(cafile=str(certificate.cert))
    tls_client = make_client(
        networks=LOOPBACK, resolver=FakeDNS({name: ["127.0.0.1"]}), ssl_context=trust
    )
    attempt = await _deliver(tls_client, f"https://{name}:{receiver.port}/hook")
    return attempt, server_names


async def test_tls_uses_the_name_for_sni_while_connecting_to_checked_address(
    make_client: MakeClient,
    certificate: Certificate,
    make_receiver: Callable[..., Awaitable[Receiver]],
) -> None:
    attempt, server_names = await _tls_delivery(
        make_client, certificate, make_receiver, "hooks.internal"
    )
    assert attempt.outcome == "delivered"
    assert server_names == ["hooks.internal"]


async def test_tls_certificate_is_verified_against_the_name(
    make_client: MakeClient,
    certificate: Certificate,
    make_receiver: Callable[..., Awaitable[Receiver]],
) -> None:
    attempt, _ = await _tls_delivery(make_client, certificate, make_receiver, "other.internal")
    assert (attempt.outcome, attempt.status_code) == ("retry", None)
    assert attempt.error is not None
    assert "certificate" in attempt.error.lower()


async def test_allowed_host_reaches_loopback(make_client: MakeClient, receiver: Receiver) -> None:
    dns = FakeDNS({"hooks.internal": ["127.0.0.1"]})
    named_client = make_client(hosts=("hooks.internal",), resolver=dns)
    attempt = await _deliver(named_client, f"http://hooks.internal:{receiver.port}/hook")
    assert attempt.outcome == "delivered"


async def test_name_that_stops_resolving_is_retried(make_client: MakeClient) -> None:
    attempt = await _deliver(make_client(resolver=FakeDNS()), "http://vanished.example.com/hook")
    assert (attempt.outcome, attempt.status_code) == ("retry", None)
    assert attempt.error is not None
    assert attempt.error.startswith("network error")


async def test_cookies_are_not_carried_between_deliveries(
    client: CallbackClient, receiver: Receiver
) -> None:
    receiver.script([Reply(headers={"set-cookie": "session=abc; Path=/"})])
    await _deliver(client, receiver.url)
    await _deliver(client, receiver.url)
    assert "cookie" not in receiver.requests[1].headers


async def test_failure_reasons_never_contain_the_secret(
    make_client: MakeClient, client: CallbackClient, receiver: Receiver
) -> None:
    receiver.script([Reply(delay_s=3.0)])
    attempts = [
        await _deliver(make_client(), receiver.url),
        await _deliver(client, receiver.url, timeout_s=0.2),
        await _deliver(client, "http://127.0.0.1:1/hook"),
    ]
    assert [a.outcome for a in attempts] == ["refused", "retry", "retry"]
    secret_part = SECRET.removeprefix("whsec_")
    assert all(a.error and secret_part not in a.error for a in attempts)


async def test_attempt_round_trips_through_json(client: CallbackClient, receiver: Receiver) -> None:
    attempt = await _deliver(client, receiver.url)
    decoded = msgspec.json.decode(msgspec.json.encode(attempt), type=AttemptResult)
    assert decoded == attempt
    assert decoded.at.tzinfo is not None


NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("30", 30.0),
        (" 1.5 ", 1.5),
        ("Wed, 25 Nov 2026 12:02:00 GMT", 120.0),
        ("Wed, 25 Nov 2026 11:00:00 GMT", 0.0),
        ("-5", 0.0),
        ("soon", None),
        ("", None),
        (None, None),
        ("nan", None),
    ],
)
def test_retry_after_is_parsed(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, NOW) == seconds


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, "delivered"),
        (299, "delivered"),
        (301, "rejected"),
        (400, "rejected"),
        (410, "gone"),
        (429, "retry"),
        (500, "retry"),
        (503, "retry"),
    ],
)
def test_status_is_classified(status: int, outcome: str) -> None:
    assert classify_status(status) == outcome
