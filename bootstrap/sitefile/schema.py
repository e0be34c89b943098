"""The JSON Schema of a site file (draft 2020-12), with descriptions.

Why a module of its own: editors and ``drboot schema`` need the schema, and only it;
pydantic generates it from the ``Site`` models, with duration defaults shown the way a
site file writes them (``10s``, not ISO 8601).
"""

from __future__ import annotations

import datetime
from typing import Any

from pydantic.json_schema import GenerateJsonSchema

from bootstrap.settings import Site
from bootstrap.sitetypes.durations import format_duration


def site_schema() -> dict[str, Any]:
    """The JSON Schema of a site file (draft 2020-12), with descriptions."""
    schema = Site.model_json_schema(mode="validation", schema_generator=_SchemaGenerator)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://drboot.dev/schemas/site-v1.json"
    return schema


class _SchemaGenerator(GenerateJsonSchema):
    """Shows duration defaults the way they are written in a site file (``10s``, not ISO)."""

    def encode_default(self, dft: Any) -> Any:
        if isinstance(dft, datetime.timedelta):
            return format_duration(dft)
        return super().encode_default(dft)
