"""``ocr-relay normalize PATH|-``: a Monite OCR task JSON in, the normalized document JSON out."""

from __future__ import annotations

import sys

import msgspec

from service.domain.monite_models import decode_task
from service.domain.normalize import NormalizeContext, NotRecognizedError, normalize

EXIT_OK = 0
EXIT_BAD_INPUT = 1


def run_normalize(path: str, include_raw: bool) -> int:
    """Print the normalized document of the task at ``path`` (``-``: stdin); 1 on bad input."""
    try:
        body = sys.stdin.buffer.read() if path == "-" else _read(path)
        task = decode_task(body)
        document = normalize(
            task, NormalizeContext(task_id=task.id, include_raw=include_raw, body=body)
        )
    except OSError as exc:
        return _fail(f"cannot read {path}: {exc.strerror or exc}")
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        return _fail(f"not a Monite OCR task: {exc}")
    except NotRecognizedError as exc:
        return _fail(str(exc))
    sys.stdout.buffer.write(msgspec.json.format(msgspec.json.encode(document), indent=2) + b"\n")
    sys.stdout.flush()
    return EXIT_OK


def _read(path: str) -> bytes:
    with open(path, "rb") as file:
        return file.read()


def _fail(reason: str) -> int:
    print(f"ocr-relay normalize: {reason}", file=sys.stderr)
    return EXIT_BAD_INPUT
