"""The user's own usage page: tokens this month, per model and per day, and their limits."""

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpResponse

from chat import usage
from chat.views.decorators import AuthenticatedRequest, page_view
from chat.views.layout import render_page, sidebar_context


@page_view("GET")
async def usage_page(request: AuthenticatedRequest) -> HttpResponse:
    context = {
        "summary": await sync_to_async(usage.summary)(request.user),
        "rate_limits": settings.CHAT_RATE_LIMITS,
        "max_concurrent": settings.CHAT_MAX_CONCURRENT,
        "exempt": settings.CHAT_STAFF_EXEMPT and request.user.is_staff,
        **await sidebar_context(request),
    }
    return await render_page(request, "chat/usage.html", context)
