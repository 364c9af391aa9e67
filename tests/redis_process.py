"""A private ``redis-server`` that fault tests may pause, kill and configure: test-only control.

The dev stack's ``RedisServer`` only starts and stops one; tests also need a server that hangs
(SIGSTOP: connections open, nothing answered, like a partitioned host), crashes (SIGKILL, no
flush) and starts again on the same port and data, and one started from a config file it may
rewrite (a sentinel).
"""

from __future__ import annotations

import signal
from collections.abc import Sequence
from pathlib import Path

from service.cli.devstack import RedisServer


class RedisProcess(RedisServer):
    """``RedisServer`` with ``pause``, ``resume`` and ``kill``; ``extra_args`` go on the command
    line (``--replicaof …``), ``config`` is the text of a config file to start from."""

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        *,
        appendonly: bool = True,
        extra_args: Sequence[str] = (),
        config: str | None = None,
    ) -> None:
        super().__init__(data_dir, port, appendonly=appendonly)
        self.extra_args = tuple(extra_args)
        self.config = config

    def argv(self, binary: str) -> list[str]:
        """The base command line, after the config file (if any), before the extra arguments."""
        base = super().argv(binary)
        if self.config is None:
            return [*base, *self.extra_args]
        config_file = self.data_dir / "redis.conf"
        if not config_file.exists():  # a sentinel rewrites its own: keep it across restarts
            config_file.write_text(self.config)
        return [base[0], str(config_file), *base[1:], *self.extra_args]

    def stop(self, timeout_s: float = 10.0) -> None:
        """Shut down gracefully; a paused server is resumed first (it would hold SIGTERM)."""
        self.resume()
        super().stop(timeout_s)

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections open, no command is ever answered."""
        if self.running and self._process is not None:
            self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused server go on (SIGCONT)."""
        if self.running and self._process is not None:
            self._process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        """Kill the server without a chance to flush (simulates a crash)."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
