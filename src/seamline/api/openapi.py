"""Post-processing of the OpenAPI document: problem responses and the API key scheme."""

from __future__ import annotations

from typing import Any

from seamline.api.problems import PROBLEM_MEDIA_TYPE, Problem

# Statuses any operation may answer besides its documented success, all as problem documents.
COMMON_PROBLEMS = {
    "400": "Malformed request (for example invalid JSON) or a bad Idempotency-Key",
    "401": "Missing, unknown or revoked API key",
    "403": "The key lacks the required scope",
    "413": "Request body too large",
    "422": "Invalid fields, or an Idempotency-Key reused with a different request",
    "500": "Unexpected error (logged; no details are exposed)",
}
MUTATION_PROBLEMS = {
    "409": "Conflicts with the current state, or the same Idempotency-Key is in flight",
    "503": "Collided with concurrent work and rolled back: retry after `Retry-After` seconds",
}
PATH_PROBLEMS = {"404": "No such object"}
# What the idempotency middleware accepts, as a client can send it: 1 to 255 printable
# characters. HTTP trims surrounding spaces from header values, so the key neither starts nor
# ends with one (a key of only spaces arrives empty and is refused).
IDEMPOTENCY_KEY_SCHEMA = {
    "type": "string",
    "minLength": 1,
    "maxLength": 255,
    "pattern": r"^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$",
}


def finish_openapi(schema: dict[str, Any]) -> dict[str, Any]:
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    problem_schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, sub in problem_schema.pop("$defs", {}).items():
        schemas[name] = sub
    schemas["Problem"] = problem_schema
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    components.setdefault("securitySchemes", {})["apiKey"] = {
        "type": "http",
        "scheme": "bearer",
        "description": "A Seamline API key: `Authorization: Bearer sk_…` (or `pk_…`, `ek_…`).",
    }
    problem_ref = {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path, item in schema.get("paths", {}).items():
        for method, operation in item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            extra = dict(COMMON_PROBLEMS)
            if method in ("post", "put", "patch", "delete"):
                extra.update(MUTATION_PROBLEMS)
                operation.setdefault("parameters", []).append(
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "schema": dict(IDEMPOTENCY_KEY_SCHEMA),
                        "description": "Retry safely: same key and body replay the first response.",
                    }
                )
            if "{" in path:
                extra.update(PATH_PROBLEMS)
            for status, description in extra.items():
                operation["responses"][status] = {
                    "description": description,
                    "content": problem_ref,
                }
    return schema
