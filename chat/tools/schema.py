"""Checking a tool's arguments against its JSON schema: the subset tools use."""

from typing import Any

MAX_DEPTH = 20

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


def problem(value: Any, schema: dict[str, Any], where: str = "arguments") -> str | None:
    """Return what is wrong with the value, or None when it fits the schema.

    Understood: type, enum, properties, required, additionalProperties (false), items.
    """
    expected = schema.get("type")
    if isinstance(expected, str) and not _is(value, expected):
        return f"{where} must be of type {expected}"
    if "enum" in schema and value not in schema["enum"]:
        return f"{where} must be one of {schema['enum']}"
    if isinstance(value, dict):
        return _object_problem(value, schema, where)
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            if found := problem(item, schema["items"], f"{where}[{index}]"):
                return found
    return None


def _object_problem(value: dict[str, Any], schema: dict[str, Any], where: str) -> str | None:
    properties = schema.get("properties") or {}
    missing = [name for name in schema.get("required", []) if name not in value]
    if missing:
        return f"{where} lacks {', '.join(missing)}"
    if schema.get("additionalProperties") is False:
        unknown = sorted(set(value) - set(properties))
        if unknown:
            return f"{where} has unknown fields: {', '.join(unknown)[:200]}"
    for name, item in value.items():
        if name in properties and (found := problem(item, properties[name], f"{where}.{name}")):
            return found
    return None


def _is(value: Any, expected: str) -> bool:
    if isinstance(value, bool) and expected in ("integer", "number"):
        return False
    return isinstance(value, _TYPES.get(expected, (object,)))


def depth(value: Any) -> int:
    """Return how deeply JSON containers nest in the value, counted without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            stack += [
                (child, level + 1) for child in (item.values() if isinstance(item, dict) else item)
            ]
    return deepest
