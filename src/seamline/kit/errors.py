"""Typed business errors, rendered as RFC 9457 problem documents by one handler."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FieldError:
    """One invalid input, located by a dotted path such as ``body.lines.0.quantity``."""

    path: str
    message: str
    code: str = "invalid"


class SeamlineError(Exception):
    """Base class of every error a caller may see; ``code`` is stable and documented."""

    status: int = 400
    title: str = "Bad request"
    code: str = "bad_request"

    def __init__(
        self,
        detail: str,
        *,
        code: str | None = None,
        errors: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        self.errors = errors or []
        self.headers = headers or {}
        # Extension members of the problem document (e.g. ``available`` on insufficient_stock).
        self.extra = extra or {}


class BadRequest(SeamlineError):
    """The request could not be understood (for example malformed JSON)."""


class Unauthenticated(SeamlineError):
    status, title, code = 401, "Unauthenticated", "unauthenticated"


class Forbidden(SeamlineError):
    status, title, code = 403, "Forbidden", "forbidden"


class NotFound(SeamlineError):
    status, title, code = 404, "Not found", "not_found"


class Conflict(SeamlineError):
    status, title, code = 409, "Conflict", "conflict"


class Unprocessable(SeamlineError):
    status, title, code = 422, "Unprocessable content", "validation_failed"


class ServiceBusy(SeamlineError):
    """A collision with concurrent work rolled the request back; the same request may simply
    be retried (sent with ``Retry-After``)."""

    status, title, code = 503, "Service busy", "concurrent_update"
