"""
Share links (chat/shares.py): the owner's JSON endpoints and page, and the public page
anyone with the URL reads without logging in.
"""

from typing import Any
from urllib.parse import urlencode

from asgiref.sync import sync_to_async
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    HttpResponseRedirect,
    JsonResponse,
)
from django.shortcuts import render
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_safe

from chat import db, shares
from chat.forms import model_label
from chat.models import Conversation, ShareLink
from chat.refusals import Refused
from chat.render import render_markdown
from chat.views.decorators import AuthenticatedRequest, api_view, page_view
from chat.views.layout import render_page, sidebar_context
from chat.views.owned import owned
from chat.views.responses import unlisted


def share_dict(link: ShareLink, request: HttpRequest) -> dict[str, Any]:
    return {
        "id": str(link.pk),
        "conversation": str(link.conversation_id),
        "leaf": str(link.leaf_id),
        "url": request.build_absolute_uri(link.get_absolute_url()),
        "created_at": link.created_at.isoformat(),
    }


@api_view("GET", "POST")
async def conversation_shares(request: AuthenticatedRequest, pk: str) -> HttpResponseBase:
    found = await _conversation_of(request, pk)
    if request.method == "POST":
        link = await db.write(shares.create, found.pk)
        return JsonResponse(share_dict(link, request), status=201)
    links = await _active_links(found)
    return JsonResponse({"shares": [share_dict(link, request) for link in links]})


@api_view("DELETE")
async def share(request: AuthenticatedRequest, pk: str) -> HttpResponseBase:
    link = await owned(ShareLink.objects.active().owned_by(request.user), pk, "share link")
    await db.write(shares.revoke, link)
    return HttpResponse(status=204)


@page_view("GET", "POST")
async def shares_page(request: AuthenticatedRequest, pk: str) -> HttpResponse:
    """The conversation's links, with Copy and Revoke; POST makes a new one, then comes
    back here (`?made=<id>` marks it), so a reload makes no second link."""
    found = await _conversation_of(request, pk)
    status, refusal = 200, None
    if request.method == "POST":
        try:
            made = await db.write(shares.create, found.pk)
        except Refused as refused:
            status, refusal = refused.status, refused.message
        else:
            url = reverse("chat:shares", args=[found.pk])
            return HttpResponseRedirect(f"{url}?{urlencode({'made': made.pk})}")
    links = await _active_links(found)
    made_id = request.GET.get("made")
    context = {
        "conversation": found,
        "links": [(link, request.build_absolute_uri(link.get_absolute_url())) for link in links],
        "made": next((link for link in links if str(link.pk) == made_id), None),
        "refusal": refusal,
        **await sidebar_context(request),
    }
    response = await render_page(request, "chat/shares.html", context, status)
    add_never_cache_headers(response)
    return response


@page_view("POST")
async def share_revoke(request: AuthenticatedRequest, pk: str) -> HttpResponse:
    link = await owned(ShareLink.objects.active().owned_by(request.user), pk, "share link")
    await db.write(shares.revoke, link)
    return HttpResponseRedirect(reverse("chat:shares", args=[link.conversation_id]))


@require_safe
async def shared(request: HttpRequest, token: str) -> HttpResponse:
    """The public, read-only page of a link: no login, nothing to post, not for indexing.

    An unknown and a revoked token get the same 404; nothing is cached anywhere, so a
    revoked link stops working with the next request, in every browser and proxy.
    """
    link = await db.run(shares.find, token)
    # Nothing is posted from this page: no CSRF token, and so no cookie for a visitor.
    context: dict[str, Any] = {"csrf_token": ""}
    if link is not None:
        branch = await db.run(shares.branch, link)
        for message in branch:
            if message.role == message.Role.ASSISTANT and message.content:
                message.html = render_markdown(message.content)  # type: ignore[attr-defined]  # for the template
        context |= {
            "link": link,
            "conversation": link.conversation,
            "model_label": model_label(link.conversation.model),
            "branch": branch,
        }
    status = 200 if link is not None else 404
    response = await sync_to_async(render)(request, "chat/shared.html", context, status=status)
    return unlisted(response)


async def _conversation_of(request: AuthenticatedRequest, pk: str) -> Conversation:
    return await owned(Conversation.objects.owned_by(request.user), pk, "conversation")


async def _active_links(conversation: Conversation) -> list[ShareLink]:
    return await db.run(list, ShareLink.objects.active().filter(conversation=conversation))
