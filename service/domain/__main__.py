"""``python -m service.domain > docs/event-schema.json``: print the published event JSON Schema.

A module of its own because ``service/__init__.py`` imports ``service.domain.schema``, and running
an already imported module with ``-m`` makes Python warn.
"""

import sys

from service.domain.schema import render_event_json_schema

sys.stdout.buffer.write(render_event_json_schema())
