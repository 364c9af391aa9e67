"""The folder tree is the architecture: dependencies point one way, checked from the imports.

``domain/`` is pure (no I/O library, nothing of ours outside it); ``storage/`` knows Redis and the
domain only; nothing imports the layers that call it (``api/``, ``workers/``, the CLI); only
``queue.py`` and ``workers/`` know arq.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
IO_LIBRARIES = {"redis", "arq", "litestar", "httpx", "httpx_aiohttp", "aiohttp", "uvicorn"}
# Entry points, the wiring and the console above everything else; no service module may import them.
TOP = (
    "service.api",
    "service.cli",
    "service.console",
    "workers",
)


def modules() -> dict[str, set[str]]:
    """Every module of ``service/`` and ``workers/`` with the modules it imports."""
    found: dict[str, set[str]] = {}
    for package in ("service", "workers"):
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            imported: set[str] = set()
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    imported.update(alias.name for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    imported.add(node.module)
            found[name] = imported
    return found


MODULES = modules()


def under(name: str, *packages: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


@pytest.mark.parametrize("module", sorted(m for m in MODULES if under(m, "service.domain")))
def test_the_domain_does_no_io_and_imports_nothing_of_ours_outside_it(module: str) -> None:
    imported = MODULES[module]
    assert {i.split(".")[0] for i in imported} & IO_LIBRARIES == set()
    assert [
        i for i in imported if under(i, "service", "workers") and not under(i, "service.domain")
    ] == []


@pytest.mark.parametrize("module", sorted(m for m in MODULES if under(m, "service.storage")))
def test_storage_imports_only_the_domain_the_clock_and_itself(module: str) -> None:
    ours = {i for i in MODULES[module] if under(i, "service", "workers")}
    assert {
        i for i in ours if not under(i, "service.domain", "service.clock", "service.storage")
    } == set()


@pytest.mark.parametrize("module", sorted(m for m in MODULES if not under(m, *TOP)))
def test_no_module_imports_the_layers_above_it(module: str) -> None:
    assert [i for i in MODULES[module] if under(i, *TOP)] == []


def test_only_the_queue_and_the_workers_know_arq() -> None:
    knowing = {m for m, imported in MODULES.items() if any(under(i, "arq") for i in imported)}
    assert {m for m in knowing if not under(m, "workers", "service.queue")} == set()
