"""Signing up. Logging in and out are Django's own views (chat/urls/accounts.py)."""

from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import alogin, get_user_model
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render, resolve_url
from django.views.decorators.http import require_http_methods

from chat.forms import SignupForm


@require_http_methods(["GET", "POST"])
async def signup(request: HttpRequest) -> HttpResponse:
    if not settings.CHAT_SIGNUP_OPEN:
        # Closed: say so, and refuse a POST all the same.
        return await _render(request, {"closed": True}, status=403)
    user = await request.auser()
    if user.is_authenticated:
        return HttpResponseRedirect(resolve_url(settings.LOGIN_REDIRECT_URL))
    form = SignupForm(request.POST if request.method == "POST" else None)
    # is_valid reads the database (is the username taken?) and runs the password validators.
    if request.method == "POST" and await sync_to_async(form.is_valid)():
        user = await sync_to_async(_create_user)(form)
        await alogin(request, user)
        if user.is_superuser:
            messages.success(
                request, "Welcome! As the first account you are the site's administrator."
            )
        return HttpResponseRedirect(resolve_url(settings.LOGIN_REDIRECT_URL))
    return await _render(request, {"form": form}, status=422 if form.errors else 200)


def _create_user(form: SignupForm) -> Any:
    """Save the new user; the first account of the site becomes its superuser."""
    with transaction.atomic():
        first = not get_user_model().objects.exists()
        user = form.save(commit=False)
        if first:
            # So that /admin/ works at once on a fresh install, with no shell command.
            user.is_staff = True
            user.is_superuser = True
        user.save()
    return user


async def _render(request: HttpRequest, context: dict[str, Any], status: int) -> HttpResponse:
    return await sync_to_async(render)(request, "registration/signup.html", context, status=status)
