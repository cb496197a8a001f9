"""Input types shared by every domain's schemas: text a database can store, JSON attributes.

Every constraint the server enforces is written into the JSON Schema too, so the OpenAPI document
tells clients (and the fuzzer) exactly which requests are valid.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Annotated, Any, TypeAlias, Union

from pydantic import Field, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError
from typing_extensions import TypeAliasType

# Display names: no control characters (PostgreSQL refuses NUL, and the rest corrupt screens
# and logs), and at least one visible character once surrounding whitespace is stripped —
# zero-width and other format characters (soft hyphen, joiners, direction marks, BOM) do not
# count as visible, so a name cannot look empty.
_CONTROL = r"\x00-\x1f\x7f-\x9f"
_INVISIBLE = r"\u00ad\u180e\u200b-\u200f\u2028-\u202f\u205f-\u206f\u3000\ufeff"
NAME_PATTERN = rf"^[^{_CONTROL}]*[^\s{_CONTROL}{_INVISIBLE}][^{_CONTROL}]*$"
# A reference to a location id (``loc_…``).
REFERENCE_PATTERN = r"^[A-Za-z0-9_.:-]+$"
# Text inside attributes: anything but NUL, which PostgreSQL cannot store in JSONB.
JSON_TEXT_PATTERN = r"^[^\x00]*$"
MAX_ATTRIBUTE_DEPTH = 32


class _ClosedKeys:
    """Marks an object schema closed: keys that do not match its key pattern are invalid.

    Pydantic writes constrained dict keys as ``patternProperties`` and leaves other keys open;
    the server refuses them, so the document must say so too.
    """

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema["additionalProperties"] = False
        return schema


JsonText = Annotated[str, Field(pattern=JSON_TEXT_PATTERN)]
if TYPE_CHECKING:  # mypy cannot follow a recursive TypeAliasType; any JSON value it is
    AttributeValue: TypeAlias = Any
else:
    AttributeValue = TypeAliasType(
        "AttributeValue",
        Union[  # noqa: UP007 - the string forward references below cannot use ``|``
            JsonText,
            bool,
            int,
            Annotated[float, Field(allow_inf_nan=False)],
            list["AttributeValue"],
            Annotated[dict[JsonText, "AttributeValue"], _ClosedKeys],
            None,
        ],
    )
Attributes = Annotated[dict[JsonText, AttributeValue], _ClosedKeys]
ATTRIBUTES_DESCRIPTION = (
    "Free-form JSON object. Text may not contain NUL, numbers must be finite, nesting is "
    f"limited to {MAX_ATTRIBUTE_DEPTH} levels and the whole object to 16 KiB of compact JSON."
)


def _attribute_problem(value: Any) -> str | None:
    """Why ``value`` cannot be stored as attributes (first problem, with its path), or None.

    Iterative, so a deeply nested document cannot exhaust the interpreter's stack.
    """
    stack: list[tuple[Any, str, int]] = [(value, "attributes", 0)]
    while stack:
        item, path, depth = stack.pop()
        if depth > MAX_ATTRIBUTE_DEPTH:
            return f"{path}: nested deeper than {MAX_ATTRIBUTE_DEPTH} levels"
        if isinstance(item, str):
            if "\x00" in item:
                return f"{path}: text must not contain NUL characters"
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    return f"{path}: text is not valid Unicode (lone surrogate)"
        elif isinstance(item, float):
            if not math.isfinite(item):
                return f"{path}: numbers must be finite"
        elif isinstance(item, list):
            stack.extend((v, f"{path}.{i}", depth + 1) for i, v in enumerate(item))
        elif isinstance(item, dict):
            for key, sub in item.items():
                if not isinstance(key, str):
                    return f"{path}: keys must be text"
                stack.append((key, f"{path}.{key}", depth + 1))
                stack.append((sub, f"{path}.{key}", depth + 1))
        elif item is not None and not isinstance(item, bool | int):
            return f"{path}: not a JSON value"
    return None


def check_attributes(value: Any) -> Any:
    """A ``mode='before'`` validator body: refuse attributes that cannot be stored."""
    problem = _attribute_problem(value) if isinstance(value, dict) else None
    if problem:
        raise PydanticCustomError("invalid_attributes", problem)
    return value


# Free text such as a description: anything but NUL, which PostgreSQL cannot store.
PlainText = Annotated[str, Field(pattern=JSON_TEXT_PATTERN)]
