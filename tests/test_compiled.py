"""The wheel's hot path, compiled by mypyc (``hatch_build.py``), behaves as the pure source.

The Docker image installs the wheel, so production runs the compiled modules while every other
test runs the source: here the wheel is built as the Dockerfile builds it, and the domain's tests
and the end-to-end tests run again with the compiled modules imported in their place.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The tests of what the compiled modules decide, of the documents and events built from it, and
# of whole watches end to end (API, worker, simulator, callback receiver) through them.
DOMAIN_TESTS = (
    "test_money.py",
    "test_normalize.py",
    "test_normalize_erp.py",
    "test_normalize_properties.py",
    "test_normalize_cmd.py",
    "test_event_schema.py",
    "test_end_to_end.py",
    "test_duplicate_hint.py",
)
COMPILED = ("service/domain/money", "service/domain/normalize")
# Imports the compiled modules before pytest could import the source's, then runs the tests.
_RUNNER = """
import sys
import pytest
import service.domain.money, service.domain.normalize
for module in (service.domain.money, service.domain.normalize):
    assert module.__file__.endswith(".so"), f"not compiled: {module.__file__}"
sys.exit(pytest.main(sys.argv[1:]))
"""

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _run(*command: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(command[:4])} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, built as the Dockerfile builds it (isolated, no dependencies)."""
    wheels = tmp_path_factory.mktemp("wheels")
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), ".", cwd=ROOT)
    (built,) = wheels.glob("ocr_relay-*.whl")
    return built


def test_the_wheel_carries_the_hot_path_compiled_for_this_platform(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    for module in COMPILED:
        assert any(name.startswith(f"{module}.") and name.endswith(".so") for name in names)
        assert f"{module}.py" in names  # the source stays beside it, for tracebacks and reading
    assert not wheel.name.endswith("-py3-none-any.whl")


def test_a_wheel_built_with_compiling_off_is_pure_python(tmp_path: Path) -> None:
    env = {**os.environ, "OCR_RELAY_COMPILE": "0"}
    _run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "-q",
        "-w",
        str(tmp_path),
        ".",
        cwd=ROOT,
        env=env,
    )
    (built,) = tmp_path.glob("ocr_relay-*.whl")
    assert built.name.endswith("-py3-none-any.whl")
    assert not [name for name in zipfile.ZipFile(built).namelist() if name.endswith(".so")]


def test_the_domain_and_end_to_end_tests_pass_against_the_compiled_modules(
    wheel: Path, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    _run(
        sys.executable,
        "-m",
        "pip",
        "install",
        "--no-deps",
        "-q",
        "-t",
        str(site),
        str(wheel),
        cwd=tmp_path,
    )
    # Run from a directory without the source tree, so that only the wheel's ``service`` is found
    # first; "append" puts the checkout (for ``tests``) after it on the path.
    output = _run(
        sys.executable,
        "-c",
        _RUNNER,
        "-q",
        "-p",
        "no:cacheprovider",
        "--import-mode=append",
        f"--rootdir={ROOT}",
        f"-c={ROOT / 'pyproject.toml'}",
        *(str(ROOT / "tests" / name) for name in DOMAIN_TESTS),
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(site)},
    )
    assert " passed" in output
