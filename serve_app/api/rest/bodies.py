"""Request bodies as FastAPI dependencies: one pydantic model per body, read within the size
cap, from JSON or a form, and documented from that same model.

FastAPI reads a body itself only for parameters declared as bodies; ours are read here so
that the size cap applies while the body streams in, images may come as file parts or base64,
and JSON is validated strictly (a JSON `"5"` is not an integer) while form fields, which are
always text, are parsed.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from fastapi import Request
from pydantic import ValidationError

from serve_app.api.body import body_limit, image_field, parse_json, read_fields
from serve_app.api.rest.errors import invalid
from serve_app.api.rest.models import RequestBody
from serve_app.errors import InvalidParameter

M = TypeVar("M", bound=RequestBody)

_IMAGE_FORMATS = "JPEG, PNG, WebP, BMP or TIFF"


@dataclass(frozen=True)
class Parsed(Generic[M]):
    """A validated body: its fields, and its images by field name."""

    fields: M
    images: dict[str, bytes]

    def image(self, name: str = "image") -> bytes:
        return self.images[name]


def _kinds(schema: dict[str, Any]) -> set[str]:
    options = schema.get("anyOf", [schema])
    return {option.get("type", "") for option in options}


class ReadBody(Generic[M]):
    """The dependency that reads a body into `model`; `.openapi` documents it."""

    def __init__(self, model: type[M]) -> None:
        self.model = model
        self.schema = model.model_json_schema()
        properties = self.schema.get("properties", {})
        self._objects = {n for n, s in properties.items() if "object" in _kinds(s)}
        self._lists = {n for n, s in properties.items() if "array" in _kinds(s)}

    async def __call__(self, request: Request) -> Parsed[M]:
        images = self.model.IMAGES
        limit = body_limit(request.app.state.max_image_bytes, len(images))
        fields, typed = await read_fields(request, limit, len(images))
        found = {name: image_field(fields, name) for name in images}
        values = {k: v for k, v in fields.items() if k not in images}
        if not typed:
            values = self._from_form(values)
        try:
            parsed = self.model.model_validate(values, strict=typed)
        except ValidationError as exc:
            raise invalid(exc) from None
        return Parsed(parsed, found)

    def _from_form(self, values: dict[str, Any]) -> dict[str, Any]:
        """Form fields are text: JSON objects come as JSON text, lists as a JSON array or
        comma-separated values."""
        for name in self._objects & values.keys():
            if isinstance(values[name], str):
                values[name] = parse_json(values[name], name)
        for name in self._lists & values.keys():
            value = values[name]
            if isinstance(value, str):
                text = value.strip()
                items = parse_json(text, name) if text.startswith("[") else text.split(",")
                if isinstance(items, list) and all(isinstance(i, str) for i in items):
                    items = [i.strip() for i in items]
                values[name] = items
        for name, value in values.items():
            if isinstance(value, bytes):
                raise InvalidParameter(f"{name} must be a form field, not a file")
        return values

    @property
    def openapi(self) -> dict[str, Any]:
        """The route's `openapi_extra`: its request body, as JSON and as a form."""
        required = [*self.model.IMAGES, *self.schema.get("required", [])]
        properties = self.schema.get("properties", {})
        json_fields = {
            name: {
                "type": "string",
                "contentEncoding": "base64",
                "description": f"The {name} image, base64 (a data: URL is accepted too).",
            }
            for name in self.model.IMAGES
        }
        form_fields = {
            name: {
                "type": "string",
                "format": "binary",
                "description": f"The {name} image: {_IMAGE_FORMATS}.",
            }
            for name in self.model.IMAGES
        }
        for name, schema in properties.items():
            json_fields[name] = schema
            if name in self._objects:
                form_fields[name] = {
                    "type": "string",
                    "contentMediaType": "application/json",
                    "description": (schema.get("description", "") + " Sent as JSON text.").strip(),
                }
            elif name in self._lists:
                form_fields[name] = {
                    "type": "string",
                    "description": "A JSON array, or comma-separated values.",
                }
            else:
                form_fields[name] = copy.deepcopy(schema)

        def body(fields: dict[str, Any]) -> dict[str, Any]:
            schema: dict[str, Any] = {"type": "object", "properties": fields}
            if required:
                schema["required"] = required
            return {"schema": schema}

        form_type = (
            "multipart/form-data" if self.model.IMAGES else "application/x-www-form-urlencoded"
        )
        content = {"application/json": body(json_fields), form_type: body(form_fields)}
        return {"requestBody": {"required": bool(required), "content": content}}
