"""The HTTP API (Litestar): wiring in ``app``, one module per resource."""
