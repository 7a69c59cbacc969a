"""The user's own usage page: tokens this month, per model and per day, and their limits."""

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from chat import usage
from chat.sidebar import clean_query, conversation_groups


@login_required
@require_GET
async def usage_page(request: HttpRequest) -> HttpResponse:
    user = await request.auser()
    query = clean_query(request.GET.get("q"))
    context = {
        "user": user,
        "summary": await sync_to_async(usage.summary)(user),
        "rate_limits": settings.CHAT_RATE_LIMITS,
        "max_concurrent": settings.CHAT_MAX_CONCURRENT,
        "exempt": settings.CHAT_STAFF_EXEMPT and user.is_staff,
        "groups": await conversation_groups(user, query),
        "query": query,
    }
    # Context processors may touch the database synchronously: render off the event loop.
    return await sync_to_async(render)(request, "chat/usage.html", context)
