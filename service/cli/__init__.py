"""The ``ocr-relay`` console script.

Every command parses the settings first, so a malformed environment variable stops the program
with one line naming the variable and exit code 2, before anything starts.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from service.settings import Settings, SettingsError

EXIT_USAGE = 2


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as exc:
        print(f"ocr-relay: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None


def _cmd_api(args: argparse.Namespace) -> int:
    settings = _settings()
    from service.api.app import serve

    serve(settings, host=args.host, port=args.port)
    return 0


def _cmd_worker(args: argparse.Namespace) -> int:
    settings = _settings()
    from workers.runner import run_worker

    run_worker(settings, burst=args.burst)
    return 0


def _cmd_simulator(args: argparse.Namespace) -> int:
    from service.simulator import serve

    try:
        serve(host=args.host, port=args.port)
    except SettingsError as exc:
        print(f"ocr-relay: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return 0


def _cmd_dev(args: argparse.Namespace) -> int:
    settings = _settings()
    from service.cli.devstack import Ports, run_dev

    return run_dev(
        settings, Ports(api=args.port, simulator=args.simulator_port, inbox=args.inbox_port)
    )


def _cmd_dev_inbox(args: argparse.Namespace) -> int:
    from service.cli.dev_inbox import serve

    serve(host=args.host, port=args.port, secret_file=args.secret_file)
    return 0


def _cmd_normalize(args: argparse.Namespace) -> int:
    from service.cli.normalize import run_normalize

    return run_normalize(args.path, include_raw=args.raw)


def _cmd_hash_key(args: argparse.Namespace) -> int:
    from service.auth import new_api_key

    key, entry = new_api_key(args.client)
    print(f"API key (give it to the client, it is shown only now): {key}")
    print(f"API_KEYS entry: {entry}")
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    settings = _settings()
    from service.cli.inspect import run_inspect

    return run_inspect(settings, args.watch_id, task_id=args.task, event_id=args.event)


def _port(text: str) -> int:
    """A TCP port to listen on: uvicorn itself takes 99999 and reports listening on it."""
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (1-65535)")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command (used by the CLI and by tests)."""
    parser = argparse.ArgumentParser(
        prog="ocr-relay",
        description="Watch Monite OCR tasks and deliver normalized, signed results to callbacks.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(
        name: str, handler: Callable[[argparse.Namespace], int], text: str
    ) -> argparse.ArgumentParser:
        cmd = sub.add_parser(name, help=text, description=text)
        cmd.set_defaults(handler=handler)
        return cmd

    api = add("api", _cmd_api, "serve the HTTP API")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=_port, default=8000)

    worker = add("worker", _cmd_worker, "run an arq worker (polling and delivery)")
    worker.add_argument("--burst", action="store_true", help="exit when the queue is empty")

    sim = add("simulator", _cmd_simulator, "serve the Monite OCR simulator")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=_port, default=8100)

    dev = add("dev", _cmd_dev, "run api + worker + simulator (+ Redis if needed) in one terminal")
    dev.add_argument("--port", type=_port, default=8000, help="API port")
    dev.add_argument("--simulator-port", type=_port, default=8100)
    dev.add_argument("--inbox-port", type=_port, default=8200, help="dev inbox port")

    inbox = add(
        "dev-inbox",
        _cmd_dev_inbox,
        "serve the dev inbox: a callback receiver that verifies and records deliveries",
    )
    inbox.add_argument("--host", default="127.0.0.1")
    inbox.add_argument("--port", type=_port, default=8200)
    inbox.add_argument(
        "--secret-file", type=Path, required=True, help="file holding the whsec_ secret"
    )

    norm = add(
        "normalize", _cmd_normalize, "normalize a Monite OCR task JSON (PATH or - for stdin)"
    )
    norm.add_argument("path", metavar="PATH|-")
    norm.add_argument("--raw", action="store_true", help="attach Monite's recognized_data as raw")

    hk = add("hash-key", _cmd_hash_key, "create a new API key and print its API_KEYS entry")
    hk.add_argument("--client", default="client", help="client name for the API_KEYS entry")

    insp = add(
        "inspect",
        _cmd_inspect,
        "print a watch, its transitions, event and deliveries (read-only); find it by its id, "
        "its event's id or its Monite task",
    )
    target = insp.add_mutually_exclusive_group(required=True)
    target.add_argument("watch_id", nargs="?", metavar="WATCH_ID")
    target.add_argument("--task", metavar="TASK_ID", help="every watch of this Monite task")
    target.add_argument("--event", metavar="EVENT_ID", help="the watch of this event")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ocr-relay`` console script."""
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130
