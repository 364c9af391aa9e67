"""Wheel build hook: the per-document hot path compiled to C with mypyc.

Normalization reads ~85 amounts and ~100 texts per invoice in Python code that is already as
lean as CPython allows (bench/RESULTS.md, issue 4); compiled by mypyc from the same typed
source it runs 1.3x faster per document. Only wheels are compiled (the Docker image installs
one): an editable install stays pure Python, so an edit is never hidden behind a stale binary,
and ``OCR_RELAY_COMPILE=0`` builds a pure wheel where no C compiler is at hand.
``tests/test_compiled.py`` runs the domain's and the end-to-end tests against the compiled
modules.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

# Modules of pure decisions on the per-document path; each must pass ``mypy --strict``.
COMPILED = ("service/domain/money.py", "service/domain/normalize.py")


class CompileHotPath(BuildHookInterface):  # type: ignore[type-arg]
    """Adds the mypyc-compiled ``COMPILED`` modules to a standard wheel."""

    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        """Compile ``COMPILED`` in a scratch directory and force-include the extensions."""
        if version == "editable" or os.environ.get("OCR_RELAY_COMPILE", "1") == "0":
            return
        from mypyc.build import mypycify
        from setuptools import Distribution

        self._scratch = Path(tempfile.mkdtemp(prefix="ocr-relay-mypyc-"))
        built = self._scratch / "lib"
        cwd = os.getcwd()
        os.chdir(self.root)
        try:
            extensions = mypycify(
                [
                    # The build environment holds no runtime dependency: their types are Any
                    # here, and the strict checks have run in CI (mypy --strict).
                    "--config-file=",
                    "--ignore-missing-imports",
                    f"--cache-dir={self._scratch / 'mypy-cache'}",
                    *COMPILED,
                ],
                opt_level="3",
                target_dir=str(self._scratch / "c"),
            )
            distribution = Distribution({"name": "ocr-relay-compiled", "ext_modules": extensions})
            command = distribution.get_command_obj("build_ext")
            command.build_lib = str(built)
            command.build_temp = str(self._scratch / "temp")
            distribution.run_command("build_ext")
        except Exception as exc:  # mypy's or the C compiler's: say how to build without them
            raise RuntimeError(
                f"compiling {', '.join(COMPILED)} with mypyc failed ({exc}); "
                "OCR_RELAY_COMPILE=0 builds a pure-Python wheel"
            ) from exc
        finally:
            os.chdir(cwd)
        for extension in built.rglob("*.so"):
            build_data["force_include"][str(extension)] = str(extension.relative_to(built))
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        print(f"compiled with mypyc: {', '.join(COMPILED)}", file=sys.stderr)

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        """Remove the scratch directory once the wheel is written."""
        scratch = getattr(self, "_scratch", None)
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
