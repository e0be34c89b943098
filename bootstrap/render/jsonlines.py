"""``--output json``: one JSON object per event on stdout, flushed at once."""

from __future__ import annotations

import json
import sys
from typing import TextIO

from bootstrap.events import Event


class JsonLinesRenderer:
    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout

    def __call__(self, event: Event) -> None:
        self.stream.write(json.dumps(event.to_dict(), default=str) + "\n")
        self.stream.flush()
