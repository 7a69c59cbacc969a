from django import template

from chat import stream_access
from chat.models import Generation

register = template.Library()


@register.simple_tag(takes_context=True)
def stream_url(context: template.Context, generation: Generation) -> str:
    """Where the page's client reads the generation's stream (chat/stream_access.py)."""
    return stream_access.stream_url(context["request"], generation)
