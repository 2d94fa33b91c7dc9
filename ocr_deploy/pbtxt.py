"""A small writer for protobuf text format (Triton's ``config.pbtxt``).

A message is a list of ``(field, value)`` pairs; a repeated field is the same name given
several times. Values: ``str`` (quoted), ``Enum`` (bare), ``bool``, ``int``, ``float``,
a list of scalars, or a nested message (a list of pairs).
"""

from __future__ import annotations

import json

Message = list[tuple[str, object]]


class Enum(str):
    """An enum value, written without quotes (``TYPE_FP32``)."""


def render(message: Message, indent: int = 0) -> str:
    """The text format of ``message``, two spaces per nesting level."""
    pad = "  " * indent
    lines = []
    for name, value in message:
        if _is_message(value):
            lines.append(f"{pad}{name} {{")
            lines.append(render(value, indent + 1))
            lines.append(f"{pad}}}")
        elif isinstance(value, (list, tuple)):
            lines.append(f"{pad}{name}: [ {', '.join(_scalar(v) for v in value)} ]")
        else:
            lines.append(f"{pad}{name}: {_scalar(value)}")
    return "\n".join(line for line in lines if line)


def parameter(key: str, value: str) -> Message:
    """A ``parameters`` entry: ``{key: KEY, value: {string_value: VALUE}}``."""
    return [("key", key), ("value", [("string_value", value)])]


def _is_message(value) -> bool:
    return isinstance(value, list) and bool(value) and all(
        isinstance(v, tuple) and len(v) == 2 and isinstance(v[0], str) for v in value)


def _scalar(value) -> str:
    if isinstance(value, Enum):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value), ensure_ascii=False)
