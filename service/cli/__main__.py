"""``python -m service.cli``: the ``ocr-relay`` console script."""

from service.cli import main

raise SystemExit(main())
