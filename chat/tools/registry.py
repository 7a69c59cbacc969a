"""The tool registry: what a tool is, the `@tool` decorator, and which tools a model gets."""

import functools
import inspect
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, overload

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")  # what OpenAI accepts as a function's name
DEFAULT_TIMEOUT = 10.0

_JSON_TYPES: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}


class ToolError(Exception):
    """A failure a tool reports on purpose: the model and the user read its message."""

    def __init__(self, message: str, code: str = "tool_error") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class ToolContext:
    """What a tool runs with: the user it acts for, and a way to report progress."""

    user: Any
    # progress(message, fraction): fraction from 0 to 1, or None when unknown.
    progress: Callable[[str, float | None], None]


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]  # a JSON schema of an object
    function: Callable[..., Any]  # (context, **arguments), sync or async
    timeout: float

    @property
    def spec(self) -> dict[str, Any]:
        """The tool as the Chat Completions API's `tools` list describes it."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.function)


@overload
def tool(function: Callable[..., Any], /) -> Tool: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    parameters: dict[str, Any] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    function: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    parameters: dict[str, Any] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Make a function a tool; its schema comes from its type hints unless given."""

    def make(function: Callable[..., Any]) -> Tool:
        tool_name = name or function.__name__
        if not NAME.fullmatch(tool_name):
            raise ImproperlyConfigured(f"tool name {tool_name!r} must match {NAME.pattern}")
        text = description or inspect.getdoc(function) or ""
        return Tool(
            name=tool_name,
            description=text.split("\n\n")[0].replace("\n", " "),
            parameters=parameters or schema_of(function),
            function=function,
            timeout=timeout,
        )

    return make(function) if function else make


def schema_of(function: Callable[..., Any]) -> dict[str, Any]:
    """Return the JSON schema of a tool's arguments: its parameters after the context."""
    hints = typing.get_type_hints(function)
    properties: dict[str, Any] = {}
    required = []
    for parameter in list(inspect.signature(function).parameters.values())[1:]:
        if parameter.name not in hints:
            raise ImproperlyConfigured(f"{function.__name__}: {parameter.name} has no type hint")
        properties[parameter.name] = _json_schema(hints[parameter.name], function)
        if parameter.default is inspect.Parameter.empty:
            required.append(parameter.name)
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


def _json_schema(hint: Any, function: Callable[..., Any]) -> dict[str, Any]:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint in _JSON_TYPES:
        return {"type": _JSON_TYPES[hint]}
    if origin is Literal and all(isinstance(arg, str) for arg in args):
        return {"type": "string", "enum": list(args)}
    if origin is list and len(args) == 1:
        return {"type": "array", "items": _json_schema(args[0], function)}
    if origin in (types.UnionType, typing.Union) and type(None) in args and len(args) == 2:
        return _json_schema(next(arg for arg in args if arg is not type(None)), function)
    raise ImproperlyConfigured(
        f"{function.__name__}: no JSON schema for {hint!r}; pass parameters= to @tool"
    )


def offered_to(model: str) -> tuple[Tool, ...]:
    """Return the tools a model is offered: CHAT_TOOLS, unless its entry says no tools
    (or CHAT_MAX_TOOL_STEPS leaves no room for a call)."""
    if model in settings.CHAT_MODELS_WITHOUT_TOOLS or not settings.CHAT_MAX_TOOL_STEPS:
        return ()
    return configured(tuple(settings.CHAT_TOOLS))


@functools.cache
def configured(paths: tuple[str, ...]) -> tuple[Tool, ...]:
    """Return the tools at these dotted paths, each checked to be a Tool."""
    tools = []
    for path in paths:
        try:
            found = import_string(path)
        except ImportError as exc:
            raise ImproperlyConfigured(f"CHAT_TOOLS: cannot import {path!r}: {exc}") from exc
        if not isinstance(found, Tool):
            raise ImproperlyConfigured(f"CHAT_TOOLS: {path!r} is not decorated with @tool")
        tools.append(found)
    names = [found.name for found in tools]
    if len(set(names)) != len(names):
        raise ImproperlyConfigured(f"CHAT_TOOLS: two tools share a name in {names}")
    return tuple(tools)
