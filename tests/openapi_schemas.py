"""OpenAI's published OpenAPI description, vendored in ``tests/data/openai-openapi/``.

Tests validate bodies against ``#/components/schemas/NAME`` so that what the mock
answers, and what a test upstream serves, has the shape OpenAI's API really has.
The document is large (about 3 MB): load it once per session (conftest's ``schemas``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

OPENAPI = Path(__file__).resolve().parent / "data" / "openai-openapi" / "openapi.yaml"
URI = "urn:openapi"


def _nullable_as_json_schema(node: Any) -> Any:
    """OpenAPI's ``nullable: true`` (still used in places) means "or null"; JSON Schema
    ignores the keyword, so spell it out as ``anyOf [..., null]``."""
    if isinstance(node, list):
        return [_nullable_as_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _nullable_as_json_schema(value) for key, value in node.items()}
    if node.get("nullable") is True:
        rest = {key: value for key, value in node.items() if key != "nullable"}
        return {"anyOf": [rest, {"type": "null"}]}
    return node


class OpenAPISchemas:
    """Validators for ``#/components/schemas/NAME``, refs resolved within the document."""

    def __init__(self, document: dict[str, Any]) -> None:
        resource = Resource.from_contents(document, default_specification=DRAFT202012)
        self.registry: Registry[Any] = Registry().with_resource(URI, resource)
        self._validators: dict[str, jsonschema.Draft202012Validator] = {}

    def validate(self, name: str, instance: Any) -> None:
        validator = self._validators.get(name)
        if validator is None:
            schema = {"$ref": f"{URI}#/components/schemas/{name}"}
            validator = self._validators[name] = jsonschema.Draft202012Validator(
                schema, registry=self.registry
            )
        error = jsonschema.exceptions.best_match(validator.iter_errors(instance))
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path)
            raise AssertionError(
                f"not a valid {name} at /{where}: {error.message}\n{instance!r}"[:4000]
            )


def load_schemas(path: Path = OPENAPI) -> OpenAPISchemas:
    """Parse the document (libyaml's loader when present: seconds instead of tens)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with path.open("rb") as handle:
        document = yaml.load(handle, Loader=loader)  # noqa: S506 - a SafeLoader, C or Python
    return OpenAPISchemas(_nullable_as_json_schema(document))
