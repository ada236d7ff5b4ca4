"""Validation of the admin API against its OpenAPI file: the file itself, and real responses."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from openapi_spec_validator import validate

import fastgw.analytics

SPEC_PATH = Path(fastgw.analytics.__file__).parent / "openapi.yaml"


@cache
def spec() -> dict[str, Any]:
    loaded = yaml.safe_load(SPEC_PATH.read_text())
    validate(loaded)
    return loaded


def operation(operation_id: str) -> dict[str, Any]:
    for methods in spec()["paths"].values():
        for op in methods.values():
            if op.get("operationId") == operation_id:
                return op
    raise KeyError(operation_id)


def response_schema(operation_id: str, status: int) -> dict[str, Any]:
    response = operation(operation_id)["responses"][str(status)]
    if "$ref" in response:  # components/responses/<name>
        response = spec()["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
    return response["content"]["application/json"]["schema"]


def check_response(operation_id: str, status: int, body: Any) -> None:
    """Raises jsonschema.ValidationError when ``body`` is not what the file promises."""
    schema = {**response_schema(operation_id, status), "components": spec()["components"]}
    jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER).validate(body)
