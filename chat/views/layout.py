"""What the chat's pages share: the sidebar beside every page, and rendering off the loop."""

from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from chat.sidebar import clean_query, conversation_groups
from chat.views.decorators import AuthenticatedRequest


def is_htmx(request: HttpRequest) -> bool:
    return request.headers.get("HX-Request") == "true"


async def sidebar_context(request: AuthenticatedRequest) -> dict[str, Any]:
    """The sidebar's conversations, searched with the page's ?q=."""
    query = clean_query(request.GET.get("q"))
    return {"groups": await conversation_groups(request.user, query), "query": query}


async def render_page(
    request: AuthenticatedRequest, template: str, context: dict[str, Any], status: int = 200
) -> HttpResponse:
    """Render a page or a fragment of one."""
    # The user resolved already, or the auth context processor would load it again.
    context.setdefault("user", request.user)
    # The page judges a silent stream by the server's heartbeat (static/js/chat/reconnect.js).
    context.setdefault("sse_heartbeat_ms", round(settings.CHAT_SSE_HEARTBEAT * 1000))
    if "conversation" in context:
        # The sidebar marks the open conversation; fragments name it with ?current=.
        context.setdefault("current_pk", str(context["conversation"].pk))
    # Context processors may touch the database synchronously: render off the event loop.
    return await sync_to_async(render)(request, template, context, status=status)
