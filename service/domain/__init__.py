"""The pure domain: data shapes and rules. No I/O, and no import of Litestar, arq or Redis."""
