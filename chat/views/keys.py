"""
Personal API keys (chat/api_keys.py): the JSON endpoints and the user's page.

Keys are made and revoked with a session, never with a key: a leaked key cannot make
itself a successor or revoke its owner's other keys.
"""

from datetime import timedelta
from typing import Any

from django import forms
from django.conf import settings
from django.http import HttpResponse, HttpResponseBase, HttpResponseRedirect, JsonResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers

from chat import api_keys, db
from chat.models import ApiKey
from chat.views.decorators import AuthenticatedRequest, api_view, page_view
from chat.views.layout import render_page, sidebar_context
from chat.views.owned import owned
from chat.views.responses import BadRequest, json_body, json_error, text_field

MAX_NAME_CHARS = 100
MAX_DAYS = 3650
EXPIRIES = [("", "Never"), ("30", "In 30 days"), ("90", "In 90 days"), ("365", "In a year")]


def key_dict(key: ApiKey) -> dict[str, Any]:
    return {
        "id": str(key.pk),
        "name": key.name,
        "prefix": key.prefix,
        "created_at": key.created_at.isoformat(),
        "last_used_at": key.last_used_at.isoformat() if key.last_used_at else None,
        "expires_at": key.expires_at.isoformat() if key.expires_at else None,
    }


@api_view("GET", "POST")
async def keys(request: AuthenticatedRequest) -> HttpResponseBase:
    if request.method == "GET":
        found = await db.run(lambda: list(ApiKey.objects.active().owned_by(request.user)))
        return JsonResponse({"keys": [key_dict(key) for key in found]})
    if request.api_key is not None:
        return _session_only()
    data = json_body(request)
    name = text_field(data, "name", max_length=MAX_NAME_CHARS, required=True)
    days = data.get("expires_in_days")
    if days is not None and (
        isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_DAYS
    ):
        raise BadRequest(
            "invalid_field", f"'expires_in_days' must be a whole number from 1 to {MAX_DAYS}."
        )
    key, secret = await _create(request, name, days)
    response = JsonResponse({**key_dict(key), "key": secret}, status=201)
    add_never_cache_headers(response)  # the key is shown once: no cache keeps it
    return response


@api_view("DELETE")
async def key(request: AuthenticatedRequest, pk: str) -> HttpResponseBase:
    if request.api_key is not None:
        return _session_only()
    found = await owned(ApiKey.objects.active().owned_by(request.user), pk, "key")
    await db.write(api_keys.revoke, found)
    return HttpResponse(status=204)


class ApiKeyForm(forms.Form):
    name = forms.CharField(max_length=MAX_NAME_CHARS, strip=True)
    expires = forms.ChoiceField(choices=EXPIRIES, required=False, label="Expires")


@page_view("GET", "POST")
async def keys_page(request: AuthenticatedRequest) -> HttpResponse:
    form = ApiKeyForm(request.POST if request.method == "POST" else None)
    new_key, status = None, 200
    if form.is_bound:
        status = 422
        if form.is_valid():
            days = int(form.cleaned_data["expires"]) if form.cleaned_data["expires"] else None
            try:
                _, new_key = await _create(request, form.cleaned_data["name"], days)
                form, status = ApiKeyForm(), 201
            except BadRequest as refused:
                form.add_error(None, refused.message)
    found = await db.run(lambda: list(ApiKey.objects.active().owned_by(request.user)))
    context = {
        "keys": found,
        "form": form,
        "new_key": new_key,
        "max_keys": settings.CHAT_MAX_API_KEYS,
        "base_url": request.build_absolute_uri("/v1"),
        **await sidebar_context(request),
    }
    response = await render_page(request, "chat/keys.html", context, status)
    add_never_cache_headers(response)
    return response


@page_view("POST")
async def key_revoke(request: AuthenticatedRequest, pk: str) -> HttpResponse:
    found = await owned(ApiKey.objects.active().owned_by(request.user), pk, "key")
    await db.write(api_keys.revoke, found)
    return HttpResponseRedirect(reverse("chat:keys"))


async def _create(request: AuthenticatedRequest, name: str, days: int | None) -> tuple[ApiKey, str]:
    expires = timezone.now() + timedelta(days=days) if days else None
    try:
        return await db.write(api_keys.create, request.user, name, expires)
    except api_keys.TooManyKeys:
        raise BadRequest(
            "too_many_keys", f"You have {settings.CHAT_MAX_API_KEYS} keys: revoke one first."
        ) from None


def _session_only() -> JsonResponse:
    return json_error(
        403, "session_required", "Keys are made and revoked when logged in, not with a key."
    )
