"""Wires the simulator's Litestar application and serves it with uvicorn."""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any

import uvicorn
from litestar import Litestar, Request, Response, Router
from litestar.datastructures import State
from litestar.di import Provide
from litestar.exceptions import HTTPException

from service.simulator import control, monite_api
from service.simulator.config import SimulatorConfig
from service.simulator.gate import SIM_STATE_KEY, MoniteGate, simulator_of
from service.simulator.state import Simulator
from service.simulator.wire import error_response

log = logging.getLogger(__name__)


def create_app(config: SimulatorConfig | None = None) -> Litestar:
    """The simulator as a Litestar app; ``config`` defaults to ``SimulatorConfig()``."""
    sim = Simulator(config or SimulatorConfig())
    monite = Router(
        "/v1",
        route_handlers=list(monite_api.ROUTES),
        middleware=[MoniteGate()],
        dependencies={"caller": Provide(monite_api.provide_caller, sync_to_thread=False)},
    )
    controls = Router("/_sim", route_handlers=list(control.ROUTES))
    return Litestar(
        route_handlers=[monite, controls],
        dependencies={"sim": Provide(simulator_of, sync_to_thread=False)},
        state=State({SIM_STATE_KEY: sim}),
        exception_handlers={HTTPException: _http_error, Exception: _crash},
        on_startup=[sim.webhooks.start],
        on_shutdown=[sim.webhooks.stop],
        openapi_config=None,
        logging_config=None,
    )


def _http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    # Unknown paths and wrong methods answer in Monite's error shape, not Litestar's.
    return error_response(exc.status_code, exc.detail)


def _crash(_: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    log.exception("simulator bug", exc_info=exc)
    return error_response(500, "Internal Server Error")


def _uvicorn_config(config: SimulatorConfig, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(
        create_app(config),
        host=host,
        port=port,
        ws="none",
        lifespan="on",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=1,
    )


def serve(host: str, port: int) -> None:
    """Run the simulator until interrupted, configured from the environment."""
    config = SimulatorConfig.from_env()
    uvicorn.Server(_uvicorn_config(config, host, port)).run()


class BackgroundSimulator:
    """The simulator on a free loopback port, in a thread with its own event loop.

    For tests and benchmarks: ``start()``, then use ``root_url``; ``stop()`` at the end.
    """

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self.config = config or SimulatorConfig()
        # The app is built first, so a failure there leaves no socket open.
        uvicorn_config = _uvicorn_config(self.config, "127.0.0.1", 0)
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self.port: int = self._socket.getsockname()[1]
        self.root_url = f"http://127.0.0.1:{self.port}"
        self._server = uvicorn.Server(uvicorn_config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    def start(self, timeout_s: float = 10.0) -> None:
        """Start serving; returns once requests are accepted."""
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not self._server.started:
            raise RuntimeError("the simulator did not start")

    def stop(self) -> None:
        """Stop serving and wait for the thread."""
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()
