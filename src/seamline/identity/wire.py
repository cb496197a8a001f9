"""Reading Segment HTTP bodies: gzip (bounded), JSON, size limits, per-call validation.

Pure functions, no database: the route hands over the raw body and gets back validated calls
and, for a batch, the calls it refused with their index and reason.
"""

from __future__ import annotations

import json
import re
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from seamline.identity.schemas import CALL_MODELS, Call, Rejection
from seamline.kit.errors import BadRequest, FieldError

EVENT_MAX_BYTES = 32 * 1024
BATCH_MAX_BYTES = 500 * 1024


@dataclass(frozen=True)
class Incoming:
    """One valid call, with the batch-level ``sentAt`` it inherits."""

    call_type: str
    call: Call
    sent_at: datetime | None


@dataclass
class Parsed:
    calls: list[Incoming] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)


def decode(body: bytes, content_encoding: str | None, *, limit: int) -> Any:
    """The JSON document in ``body``, un-gzipped without ever inflating past ``limit`` bytes."""
    encoding = (content_encoding or "identity").strip().lower()
    if encoding == "gzip":
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            body = inflater.decompress(body, limit + 1)
        except zlib.error as exc:
            raise BadRequest("the body is not valid gzip", code="malformed_gzip") from exc
        if len(body) <= limit and not inflater.eof:
            raise BadRequest("the gzip body is truncated", code="malformed_gzip")
    elif encoding != "identity":
        raise BadRequest(
            f"Content-Encoding {encoding!r} is not supported (use gzip or none)",
            code="unsupported_content_encoding",
        )
    if len(body) > limit:
        code = "batch_too_large" if limit == BATCH_MAX_BYTES else "event_too_large"
        raise BadRequest(f"the body exceeds {limit} bytes", code=code)
    try:
        return json.loads(body, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:  # includes UnicodeDecodeError
        raise BadRequest("The request body is not valid JSON.", code="malformed_json") from exc


def _no_constant(name: str) -> Any:
    # NaN and Infinity are not JSON, and PostgreSQL's jsonb refuses them.
    raise ValueError(f"{name} is not JSON")


def _storable(value: Any) -> bool:
    """No NUL characters and no lone surrogates anywhere (PostgreSQL cannot store either)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return False
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return False
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return True


MAX_DEPTH = 64


# A NUL character as the JSON encoder writes it: ``\\u0000`` after an even number of
# backslashes (an odd number would make it the text "\\u0000", which is fine).
_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")
_STRINGS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_NESTING = str.maketrans({"{": "(", "[": "(", "}": ")", "]": ")"})
_NOT_BRACKETS = re.compile(r"[^()]+")


def _check_shape(raw: Any) -> None:
    """The call is storable (no NUL, no lone surrogate), at most ``MAX_DEPTH`` deep and at most
    ``EVENT_MAX_BYTES`` as compact JSON; ``ValueError`` with the first rule broken, in that
    order.

    One pass of the C JSON encoder answers all three: NUL characters come out as ``\\u0000``
    escapes, lone surrogates make the UTF-8 encoding fail, and the depth is the deepest
    bracket nesting outside strings. Walking the call in Python twice (``_storable``,
    ``_depth``) cost twice as much as the rest of the validation; they remain for a call so
    deep that the encoder gives up."""
    try:
        text = json.dumps(raw, separators=(",", ":"), ensure_ascii=False)
    except RecursionError:
        text = None
    if text is None:
        if not _storable(raw):
            raise ValueError("contains a NUL character or an invalid Unicode escape")
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
    try:
        size = len(text.encode())
    except UnicodeEncodeError:
        size = -1
    if size < 0 or ("\\u0000" in text and _NUL_ESCAPE.search(text)):
        raise ValueError("contains a NUL character or an invalid Unicode escape")
    if _deepest(text) > MAX_DEPTH:
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
    if size > EVENT_MAX_BYTES:
        raise ValueError(f"event_too_large: a call may be at most {EVENT_MAX_BYTES} bytes")


def _deepest(text: str) -> int:
    """The deepest nesting of objects and arrays in compact JSON ``text`` (or a count of its
    brackets, when that is already at most ``MAX_DEPTH``: most calls)."""
    opened = text.count("{") + text.count("[")
    if opened <= MAX_DEPTH:
        return opened
    brackets = _NOT_BRACKETS.sub("", _STRINGS.sub("", text).translate(_NESTING))
    depth = deepest = 0
    for char in brackets:
        if char == "(":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def validate_call(raw: Any, call_type: str | None, *, sent_at: datetime | None = None) -> Incoming:
    """One call, checked; ``call_type`` comes from the path (or from ``type`` in a batch).

    Raises ``ValueError`` with a one-line reason a client can act on.
    """
    if not isinstance(raw, dict):
        raise ValueError("a call must be a JSON object")
    kind = call_type or raw.get("type")
    if not isinstance(kind, str) or kind not in CALL_MODELS:
        raise ValueError("type must be one of " + ", ".join(CALL_MODELS))
    _check_shape(raw)
    try:
        call = CALL_MODELS[kind].model_validate({**raw, "type": kind})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "call"
        raise ValueError(f"{where}: {first['msg']}") from None
    try:
        call.timestamp = _aware(call.timestamp)
        call.sent_at = _aware(call.sent_at)
    except OverflowError:
        raise ValueError("timestamp: out of range") from None
    return Incoming(kind, call, call.sent_at or sent_at)


def _aware(value: datetime | None) -> datetime | None:
    """In UTC; Segment treats a time without an offset as UTC. May raise OverflowError."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def parse_single(document: Any, call_type: str) -> Parsed:
    """A single call (``/v1/track`` …): refused as a whole with 400 when invalid."""
    try:
        return Parsed(calls=[validate_call(document, call_type)])
    except ValueError as exc:
        reason = str(exc)
        code = "event_too_large" if reason.startswith("event_too_large") else "invalid_call"
        raise BadRequest(
            f"the {call_type} call is invalid: {reason}",
            code=code,
            errors=[FieldError("body", reason, code)],
        ) from None


def parse_batch(document: Any) -> Parsed:
    """A batch: valid calls are kept, each refused one is reported by index and reason."""
    if not isinstance(document, dict) or not isinstance(document.get("batch"), list):
        raise BadRequest(
            "a batch is an object with a `batch` array",
            code="invalid_batch",
            errors=[FieldError("body.batch", "an array of calls is required", "missing")],
        )
    try:
        sent_at = _aware(_time(document.get("sentAt")))
    except (ValueError, OverflowError):
        sent_at = None
    shared = document.get("context")
    parsed = Parsed()
    for index, raw in enumerate(document["batch"]):
        own = raw.get("context", {}) if isinstance(raw, dict) else None
        if isinstance(own, dict) and isinstance(shared, dict):
            # Batch-level context fills what a call does not say itself (as Segment does).
            raw = {**raw, "context": {**shared, **own}}
        try:
            parsed.calls.append(validate_call(raw, None, sent_at=sent_at))
        except ValueError as exc:
            parsed.rejected.append(Rejection(index=index, reason=str(exc)))
    return parsed


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
