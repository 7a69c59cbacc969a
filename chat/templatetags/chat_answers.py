import json
from typing import Any

from django import template

register = template.Library()


@register.filter
def as_json(value: Any) -> str:
    """Show a tool call's arguments or result as indented JSON (escaped by the template)."""
    return json.dumps(value, ensure_ascii=False, indent=2)


@register.filter
def compact_json(value: Any) -> str:
    """Show a tool call's arguments on one line, for its card's title."""
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
