"""What every ``/v1`` request goes through before its handler, as at Monite's edge.

In order: find the API client (from the token, or the body of a token request), apply its rate
limit, inject chaos (latency, hang, 5xx), demand ``x-monite-version``, check the Bearer token, and
resolve the entity whose tasks the request may see. Every answer, including refusals, carries the
rate-limit headers and is counted for the client by endpoint and status.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from typing import Any, Final

import msgspec
from litestar import Request, Response
from litestar.di import NamedDependency
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from service.simulator.ratelimit import ANONYMOUS, Decision
from service.simulator.state import Simulator
from service.simulator.tasks import PARTNER_SPACE
from service.simulator.tokens import Grant
from service.simulator.wire import error_response, validation_response

CALLER_KEY: Final = "sim_caller"
SIM_STATE_KEY: Final = "simulator"
PUBLIC_OPT: Final = "monite_public"
"""Handler ``opt`` flag of the endpoints that need no Bearer token (the ``/auth`` ones)."""


class Caller(msgspec.Struct, frozen=True):
    """Who is asking: the API client, the task space it acts in, and its ``x-monite-version``."""

    client_id: str
    entity: str
    api_version: str

    @property
    def entity_header(self) -> bool:
        """True when the request acts for an entity (the condition for webhooks)."""
        return self.entity != PARTNER_SPACE


CallerDep = NamedDependency[Caller]
SimulatorDep = NamedDependency[Simulator]


class _ClientName(msgspec.Struct):
    client_id: str = ANONYMOUS


class Refusal(Exception):
    """An answer the gate gives instead of the handler."""

    def __init__(self, response: Response[bytes]) -> None:
        super().__init__(response.status_code)
        self.response = response


def _error(status: int, message: str, kind: str | None = None) -> Refusal:
    return Refusal(error_response(status, message, kind=kind))


class MoniteGate(ASGIMiddleware):
    """Rate limit, chaos, version header, authentication and counting for Monite's endpoints."""

    scopes = (ScopeType.HTTP,)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        """Admit or refuse one request, then add headers to and count its answer."""
        request: Request[Any, Any, Any] = Request(scope, receive)
        sim = simulator_of(request)
        handler = scope["route_handler"]
        endpoint = handler.name or handler.handler_name
        public = bool(handler.opt.get(PUBLIC_OPT))
        grant = None if public else _grant(sim, request)
        client = grant.client_id if grant else await self._claimed_client(request, public)
        decision = sim.limiter.admit(client)
        extra = self._headers(request, decision)
        malformed = decision.allowed and sim.rng.random() < sim.chaos.malformed_rate
        statuses: list[int] = []

        async def answer(message: Message) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])
                message["headers"] = [*message.get("headers", ()), *extra]
            elif message["type"] == "http.response.body" and malformed and 200 <= statuses[0] < 300:
                body = message.get("body", b"")
                # Same length, so Content-Length stays right and only the JSON is broken.
                message["body"] = body[: len(body) // 2] + b" " * (len(body) - len(body) // 2)
            await send(message)

        try:
            try:
                if not decision.allowed:
                    raise _error(429, "Too many requests")
                if not await _chaos(sim, receive):
                    return
                scope.setdefault("state", {})[CALLER_KEY] = self._caller(request, grant, public)
            except Refusal as refusal:
                await refusal.response.to_asgi_response(None, request)(scope, receive, answer)
                return
            await next_app(scope, receive, answer)
        finally:
            sim.limiter.record(client, endpoint, statuses[0] if statuses else 499)

    async def _claimed_client(self, request: Request[Any, Any, Any], public: bool) -> str:
        """The client a token request names, so that it counts against that client's limit."""
        if not public:
            return ANONYMOUS
        try:
            return msgspec.json.decode(await request.body(), type=_ClientName).client_id
        except (msgspec.DecodeError, msgspec.ValidationError):
            return ANONYMOUS

    def _headers(
        self, request: Request[Any, Any, Any], decision: Decision
    ) -> list[tuple[bytes, bytes]]:
        headers = decision.headers()
        headers["x-request-id"] = uuid.uuid4().hex
        for name in ("x-monite-version", "x-monite-entity-id"):
            if value := request.headers.get(name):
                headers[name] = value
        return [(k.lower().encode(), v.encode()) for k, v in headers.items()]

    def _caller(self, request: Request[Any, Any, Any], grant: Grant | None, public: bool) -> Caller:
        version = request.headers.get("x-monite-version", "").strip()
        if not version:
            raise _error(400, "Missing the x-monite-version HTTP header", "missing_api_version")
        if public:
            return Caller(client_id=ANONYMOUS, entity=PARTNER_SPACE, api_version=version)
        if grant is None:
            raise _error(401, "Invalid or missing access token")
        if grant.expires_at <= time.time():
            raise _error(401, "The access token has expired")
        entity = grant.entity or _entity_header(request)
        return Caller(client_id=grant.client_id, entity=entity, api_version=version)


def simulator_of(request: Request[Any, Any, Any]) -> Simulator:
    """The simulator the application serves (kept in the app state, the one place all share)."""
    sim: Simulator = request.app.state[SIM_STATE_KEY]
    return sim


def _grant(sim: Simulator, request: Request[Any, Any, Any]) -> Grant | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return None
    return sim.tokens.lookup(token.strip())


async def _chaos(sim: Simulator, receive: Receive) -> bool:
    """Apply latency, hangs and 5xx; False when the client went away during a hang."""
    chaos, rng = sim.chaos, sim.rng
    if chaos.latency_s:
        await asyncio.sleep(chaos.latency_s)
    if chaos.hang_rate and rng.random() < chaos.hang_rate:
        if await _client_left(receive, chaos.hang_s):
            return False
        raise _error(504, "Gateway Timeout")
    if chaos.error_rate and rng.random() < chaos.error_rate:
        status = rng.choice((500, 502, 503))
        if status == 503:
            raise Refusal(error_response(503, "Service Unavailable", headers={"Retry-After": "1"}))
        raise _error(status, "Internal Server Error" if status == 500 else "Bad Gateway")
    return True


def _entity_header(request: Request[Any, Any, Any]) -> str:
    raw = request.headers.get("x-monite-entity-id", "").strip()
    if not raw:
        return PARTNER_SPACE
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        loc: list[str | int] = ["header", "x-monite-entity-id"]
        raise Refusal(
            validation_response(loc, "Input should be a valid UUID", "uuid_parsing")
        ) from None


async def _client_left(receive: Receive, limit_s: float) -> bool:
    """Wait until the client disconnects (True) or ``limit_s`` passes (False)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(limit_s):
            while (await receive())["type"] != "http.disconnect":
                pass
            return True
    return False
