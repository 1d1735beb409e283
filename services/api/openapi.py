"""The OpenAPI 3.1 document, generated from the route table and the pydantic models that validate
requests (never written by hand)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from services.api import idempotency
from services.api.paging import MAX_PAGE_SIZE, PAGE_SIZE
from shared.web import Handler

#: Every error answer has this shape.
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "details": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"field": {"type": "string"}, "reason": {"type": "string"}},
                    },
                },
            },
            "additionalProperties": True,
        }
    },
}
_REASONS = {
    200: "OK",
    201: "Created",
    204: "No content",
    400: "Not JSON",
    401: "Missing or invalid API key",
    402: "Insufficient balance",
    404: "Not found",
    405: "Method not allowed",
    409: "State conflict",
    413: "Body too large",
    415: "Unsupported media type",
    422: "Validation error",
    429: "Too many at once (Retry-After)",
    503: "The database is unavailable for a moment (Retry-After)",
}
#: Statuses every authenticated operation may answer besides its own.
_COMMON = (400, 401, 405, 413, 415, 422, 503)
#: Query parameters whose values are not just any text (the others are strings).
_QUERY_SCHEMAS: dict[str, dict[str, Any]] = {
    "limit": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE, "default": PAGE_SIZE},
    "cursor": {"type": "string"},
    "run": {"type": "integer", "minimum": 1},
}
#: The header of the operations that honour it (`services.api.idempotency`).
IDEMPOTENCY_KEY: dict[str, Any] = {
    "name": idempotency.HEADER,
    "in": "header",
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": idempotency.MAX_KEY_LENGTH},
    "description": (
        "Retrying with the same key, path and body creates nothing and answers the first answer again "
        "(`Idempotent-Replayed: true`); the same key with another path or body, or while the first request "
        "still runs, is a 409. Scoped to the account, kept 24 hours."
    ),
}


@dataclass(frozen=True)
class Operation:
    """One row of the route table: what the API serves and how the document describes it."""

    method: str
    path: str
    handler: Handler
    summary: str
    body: type[BaseModel] | None = None
    #: Whether a request must have a body (`POST /api-keys` may have none: an empty one is `{}`).
    body_required: bool = True
    ok: int = 200
    #: Other 2xx answers with the same body, and what each means (`POST /contacts`: 200, updated).
    also: tuple[tuple[int, str], ...] = ()
    errors: tuple[int, ...] = ()
    query: tuple[tuple[str, str], ...] = ()  # (name, description)
    content: str = "application/json"
    public: bool = False
    tags: tuple[str, ...] = field(default=())
    #: The schema of the answer's body (required of a JSON answer; a download's is a string).
    answer: dict[str, Any] | None = None
    #: The answer's media type (a CSV download: `text/csv`, described as a string).
    answer_content: str = "application/json"


def build(operations: list[Operation], title: str, version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of `operations`."""
    models = {op.body for op in operations if op.body is not None}
    refs, defs = models_json_schema(
        [(m, "validation") for m in sorted(models, key=lambda m: (m.__module__, m.__name__))],
        ref_template="#/components/schemas/{model}",
    )
    # two models of one name get module-qualified names: take each model's $ref from pydantic
    bodies = {model: refs[(model, "validation")] for model in models}
    schemas = {**defs.get("$defs", {}), "Error": ERROR_SCHEMA}
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(_openapi_path(op.path), {})[op.method.lower()] = _operation(op, bodies)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": version,
            "description": (
                'Outbound campaigns over SMS, email and voice. Errors: `{"error": {code, message, details}}`, '
                "with every bad field of a request in `details`. The API is strict: an unknown field in a "
                "request body is a 422 naming it (`additionalProperties: false`), with the known name meant "
                "when one is close; a contact's extra keys are its template variables."
            ),
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _openapi_path(path: str) -> str:
    # aiohttp's `{action:launch|pause}` patterns are expanded into one path per value by the table
    return re.sub(r"\{(\w+):[^}]+\}", r"{\1}", path)


def _operation(op: Operation, bodies: dict[type[BaseModel], dict[str, Any]]) -> dict[str, Any]:
    params = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"\{(\w+)(?::[^}]+)?\}", op.path)
    ]
    params += [
        {
            "name": name,
            "in": "query",
            "required": False,
            "schema": _QUERY_SCHEMAS.get(name, {"type": "string"}),
            "description": text,
        }
        for name, text in op.query
    ]
    honours_key = idempotency.honours(op.method, op.path)
    if honours_key:
        params.append(IDEMPOTENCY_KEY)
    responses: dict[str, Any] = {}
    for status, meaning in ((op.ok, _REASONS.get(op.ok, "OK")), *op.also):
        content = {} if status == 204 else {"content": {op.answer_content: {"schema": _answer(op)}}}
        responses[str(status)] = {"description": meaning, **content}
    statuses = set(op.errors) | ({400, 405, 413, 415, 422, 503} if op.public else set(_COMMON))
    if op.path.count("{"):
        statuses.add(404)
    if honours_key:  # a key used for another request, or for one still running
        statuses.add(409)
    for status in sorted(statuses):
        responses[str(status)] = {
            "description": _REASONS.get(status, "Error"),
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
    body: dict[str, Any] = {
        "summary": op.summary,
        "operationId": _operation_id(op),
        "parameters": params,
        "responses": responses,
    }
    if op.public:
        body["security"] = []
    if op.tags:
        body["tags"] = list(op.tags)
    if op.body is not None:
        body["requestBody"] = {
            "required": op.body_required,
            "content": {op.content: {"schema": bodies[op.body]}},
        }
    return body


def _answer(op: Operation) -> dict[str, Any]:
    """The schema of the operation's 2xx body: its own; a download's is a string."""
    if op.answer is not None:
        return op.answer
    if op.answer_content != "application/json":
        return {"type": "string"}
    raise ValueError(f"{op.method} {op.path}: a JSON answer needs its schema (services/api/answers.py)")


def _operation_id(op: Operation) -> str:
    words = re.sub(r"[{}]|:[^}]+", "", op.path).strip("/").replace("-", "_").replace("/", "_").replace(".", "_")
    return f"{op.method.lower()}_{words or 'root'}"


def handler(document: dict[str, Any]) -> Handler:
    """`GET /openapi.json`."""

    async def openapi(_: web.Request) -> web.Response:
        return web.json_response(document)

    return openapi
