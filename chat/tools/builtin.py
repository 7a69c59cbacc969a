"""The built-in tools: arithmetic, the time, and a search of the user's own messages."""

import ast
import datetime
import math
import operator
import zoneinfo
from collections.abc import Callable
from typing import Any

from chat.models import Message
from chat.tools.registry import ToolContext, ToolError, tool

MAX_EXPRESSION_CHARS = 500
MAX_DIGITS = 1000  # a result, or any step towards it, of more digits is refused
MAX_SEARCH_RESULTS = 20
EXCERPT_CHARS = 200

_OPERATORS: dict[type[ast.AST], Callable[..., Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}
# How people and models write the operators, in the forms Python parses.
_SPELLINGS = str.maketrans({"\u00d7": "*", "\u00f7": "/", "\u2212": "-", "^": "**"})


@tool(timeout=2)
def calculator(context: ToolContext, expression: str) -> dict[str, float | int]:
    """Evaluate an arithmetic expression: numbers, + - * / // %, powers and parentheses.

    Parsed and computed step by step, never evaluated as code; a power whose result
    would be too large is refused before it is computed.
    """
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ToolError(f"The expression is longer than {MAX_EXPRESSION_CHARS} characters.")
    try:
        tree = ast.parse(expression.translate(_SPELLINGS).strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise ToolError("That is not an arithmetic expression.") from None
    value = _evaluate(tree.body)
    if isinstance(value, float) and not math.isfinite(value):
        raise ToolError("The result is too large.")
    return {"value": value}


def _evaluate(node: ast.AST) -> int | float:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return _bounded(node.value)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _OPERATORS:
        return _OPERATORS[type(node.op)](_evaluate(node.operand))  # type: ignore[no-any-return]
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow):
            _check_power(left, right)
        try:
            return _bounded(_OPERATORS[type(node.op)](left, right))
        except ZeroDivisionError:
            raise ToolError("Division by zero.") from None
        except OverflowError:
            raise ToolError("The result is too large.") from None
    raise ToolError("Only numbers, + - * / // % ** and parentheses are allowed.")


def _check_power(base: int | float, exponent: int | float) -> None:
    if abs(base) > 1 and abs(exponent) * math.log10(abs(base)) > MAX_DIGITS:
        raise ToolError("The result is too large.")


def _bounded(value: Any) -> int | float:
    if isinstance(value, complex):
        raise ToolError("The result is not a real number.")
    if isinstance(value, int) and value.bit_length() > MAX_DIGITS * 3.33:
        raise ToolError("The result is too large.")
    return value  # type: ignore[no-any-return]


@tool(timeout=2)
def current_time(context: ToolContext, timezone: str = "UTC") -> dict[str, str]:
    """The current date and time in an IANA time zone, such as Europe/Paris (default UTC)."""
    try:
        zone = zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ToolError(f"{timezone[:100]!r} is not an IANA time zone.") from None
    now = datetime.datetime.now(zone)
    return {"iso": now.isoformat(timespec="seconds"), "timezone": timezone}


@tool(timeout=5)
def search_conversations(context: ToolContext, query: str, limit: int = 5) -> dict[str, Any]:
    """Search the user's own earlier conversations for messages containing the words.

    Returns the newest matching messages, with their conversation's title and an excerpt.
    """
    words = query.split()[:10]
    if not words or not 1 <= limit <= MAX_SEARCH_RESULTS:
        raise ToolError(f"Give some words to look for, and a limit from 1 to {MAX_SEARCH_RESULTS}.")
    # The user's own messages only: the tool acts for the conversation's owner.
    found = Message.objects.owned_by(context.user).select_related("conversation")
    for word in words:
        found = found.filter(content__icontains=word)
    matches = []
    for message in found.order_by("-created_at")[:limit]:
        at = message.content.lower().find(words[0].lower())
        start = max(0, at - EXCERPT_CHARS // 2)
        matches.append(
            {
                "conversation": str(message.conversation),
                "conversation_id": str(message.conversation_id),
                "role": message.role,
                "excerpt": message.content[start : start + EXCERPT_CHARS],
                "created_at": message.created_at.isoformat(timespec="seconds"),
            }
        )
    return {"matches": matches}
