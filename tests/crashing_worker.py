"""A worker process that kills itself (SIGKILL) at one step boundary: test-only process control.

``python -m tests.crashing_worker METHOD`` runs ``ocr-relay worker`` (settings from the
environment) whose first call of ``Queue.METHOD`` — the enqueue that follows a state write —
kills the process instead, as a power cut or the OOM killer would: no ``finally`` runs, no
connection is closed. Production code carries no hook for this: the method is replaced here.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from service.cli import main
from service.queue import Queue


def _kill_at(method: str) -> None:
    async def die(*_: Any, **__: Any) -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    setattr(Queue, method, die)


if __name__ == "__main__":
    _kill_at(sys.argv[1])
    sys.exit(main(["worker"]))
