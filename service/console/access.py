"""Who may use the console: operator sign-in, sessions, and the CSRF check of every form.

A session is server-side (``service.storage.sessions``): the cookie holds a random token,
``HttpOnly``, ``SameSite=Strict``, limited to ``/console``, ``Secure`` over HTTPS. Every form
carries the session's CSRF token; the sign-in form, before there is a session, a double-submit
token from a short-lived cookie of its own.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from dataclasses import dataclass
from typing import Any, Final

from litestar import Request, Response, get, post
from litestar.datastructures import Cookie, State
from litestar.di import NamedDependency
from litestar.exceptions import PermissionDeniedException
from litestar.response import Redirect, Template

from service.api.deps import Services
from service.auth import authenticate
from service.operations import Actor
from service.storage.sessions import ConsoleSession

log = logging.getLogger("ocr_relay.console")

PREFIX: Final = "/console"
COOKIE: Final = "ocr_relay_console"
# Holds the sign-in form's CSRF token until the operator is signed in (double submit).
LOGIN_COOKIE: Final = "ocr_relay_console_login"


class NotSignedIn(Exception):
    """The request carries no live console session."""


@dataclass(frozen=True, slots=True)
class Signed:
    """The operator of a request, with the session's cookie token."""

    token: str
    session: ConsoleSession

    @property
    def actor(self) -> Actor:
        """The operator as the watch service records them."""
        return Actor.operator(self.session.operator)


async def provide_signed(request: Request[Any, Any, Any], state: State) -> Signed:
    """The signed-in operator; ``NotSignedIn`` sends the browser to the sign-in form."""
    services: Services = state.services
    token = request.cookies.get(COOKIE, "")
    session = await services.store.sessions.get(token)
    if session is None:
        raise NotSignedIn
    return Signed(token=token, session=session)


ServicesDep = NamedDependency[Services]
SignedDep = NamedDependency[Signed]


def page(name: str, signed: Signed | None, *, status_code: int = 200, **context: Any) -> Template:
    """A console page, with the operator and the CSRF token its forms need."""
    return Template(
        template_name=name,
        context={
            "operator": None if signed is None else signed.session.operator,
            "csrf": "" if signed is None else signed.session.csrf,
            **context,
        },
        status_code=status_code,
    )


async def checked_form(request: Request[Any, Any, Any], signed: Signed | None) -> dict[str, str]:
    """The posted form, once its CSRF token matches the session's (403 otherwise)."""
    form = await request.form()
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    expected = signed.session.csrf if signed is not None else request.cookies.get(LOGIN_COOKIE, "")
    if not expected or not hmac.compare_digest(fields.get("csrf", ""), expected):
        raise PermissionDeniedException(
            detail="The form was missing its security token or it was stale; open the page again."
        )
    return fields


def cookie(request: Request[Any, Any, Any], key: str, value: str, max_age: int) -> Cookie:
    """A console cookie: HttpOnly, SameSite=Strict, /console only, Secure over HTTPS."""
    return Cookie(
        key=key,
        value=value,
        max_age=max_age,
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


# -- signing in and out ---------------------------------------------------------------------------
@get("/login")
async def login_form(request: Request[Any, Any, Any], services: ServicesDep) -> Response[Any]:
    """The sign-in form (the overview when already signed in)."""
    if await services.store.sessions.get(request.cookies.get(COOKIE, "")) is not None:
        return Redirect(path=PREFIX, status_code=303)
    return _login_page(request)


def _login_page(
    request: Request[Any, Any, Any], error: str | None = None, status_code: int = 200
) -> Template:
    token = secrets.token_urlsafe(32)
    form = page(
        "login.html",
        None,
        status_code=status_code,
        title="Sign in",
        login_csrf=token,
        error=error,
    )
    form.cookies.append(cookie(request, LOGIN_COOKIE, token, 3600))
    return form


@post("/login", status_code=303)
async def login(request: Request[Any, Any, Any], services: ServicesDep) -> Response[Any]:
    """Start a session for the operator whose key was entered."""
    fields = await checked_form(request, None)
    operator = authenticate(services.settings.console_keys, fields.get("key", "").strip())
    if operator is None:
        log.warning("console sign-in refused", extra={"peer": _peer(request)})
        return _login_page(request, "That is not an operator key.", status_code=401)
    lifetime = services.settings.console_session_s
    token, _ = await services.store.sessions.start(operator, lifetime)
    log.info("console sign-in", extra={"operator": operator})
    return Redirect(
        path=PREFIX,
        status_code=303,
        cookies=[
            cookie(request, COOKIE, token, lifetime),
            cookie(request, LOGIN_COOKIE, "", 0),
        ],
    )


@post("/logout", status_code=303)
async def logout(
    request: Request[Any, Any, Any], services: ServicesDep, signed: SignedDep
) -> Response[Any]:
    """End the session everywhere and forget the cookie."""
    await checked_form(request, signed)
    await services.store.sessions.end(signed.token)
    log.info("console sign-out", extra={"operator": signed.session.operator})
    return Redirect(
        path=f"{PREFIX}/login", status_code=303, cookies=[cookie(request, COOKIE, "", 0)]
    )


def _peer(request: Request[Any, Any, Any]) -> str:
    return request.client.host if request.client else "unknown"


def signed_in_later(request: Request[Any, Any, Any], _: NotSignedIn) -> Response[Any]:
    """Send a visitor without a session to the sign-in form (an exception handler)."""
    return Redirect(path=f"{PREFIX}/login", status_code=303)
