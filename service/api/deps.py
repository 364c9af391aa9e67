"""What the API's handlers get injected: the per-process services, and the calling client."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import Request
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.exceptions import NotAuthorizedException

from service.auth import authenticate, bearer_token
from service.callbacks.egress import CallbackPolicy
from service.monite import MoniteClient
from service.operations import WatchService
from service.queue import Queue
from service.settings import Settings
from service.storage import Store
from service.storage.keys import Keys


@dataclass(frozen=True, slots=True)
class Services:
    """Built once per API process in the lifespan hook, kept on ``app.state.services``."""

    settings: Settings
    keys: Keys
    store: Store
    queue: Queue
    watches: WatchService
    monite: MoniteClient
    policy: CallbackPolicy


def provide_services(state: State) -> Services:
    """The process's services."""
    services: Services = state.services
    return services


def provide_client(request: Request[Any, Any, Any], state: State) -> str:
    """The name of the client whose API key is in ``Authorization: Bearer …`` (401 otherwise)."""
    services: Services = state.services
    token = bearer_token(request.headers.get("authorization", ""))
    if token is None:
        raise NotAuthorizedException(
            detail="send your API key as 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    client = authenticate(services.settings.api_keys, token)
    if client is None:
        raise NotAuthorizedException(
            detail="unknown API key", headers={"WWW-Authenticate": "Bearer"}
        )
    return client


ServicesDep = NamedDependency[Services]
ClientDep = NamedDependency[str]
DEPENDENCIES: dict[str, Provide] = {
    "services": Provide(provide_services, sync_to_thread=False),
    "client": Provide(provide_client, sync_to_thread=False),
}
