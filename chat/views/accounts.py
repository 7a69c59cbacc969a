"""Signing up and logging in, each limited per client address. Logging out is Django's."""

import hashlib
import math
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import alogin, get_user_model
from django.contrib.auth import views as auth_views
from django.core.exceptions import NON_FIELD_ERRORS
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render, resolve_url
from django.template.defaultfilters import pluralize
from django.views.decorators.http import require_http_methods

from chat import db, limits
from chat.forms import SignupForm
from chat.limits import Window, WindowFull, client_address

# Fixed windows, in seconds; the counts are settings (CHAT_LOGIN_FAILURES_PER_USERNAME,
# CHAT_LOGIN_FAILURES_PER_ADDRESS, CHAT_SIGNUPS_PER_ADDRESS).
USERNAME_WINDOW = 15 * 60
ADDRESS_WINDOW = 60 * 60


def _login_windows(request: HttpRequest) -> list[Window]:
    address = client_address(request)
    # Hashed: any text typed as a username makes a valid cache key. Casefolded: on a
    # database that compares usernames without case, "Alice" must not be a fresh counter.
    username = request.POST.get("username", "").casefold().encode()
    return [
        Window(
            f"chat:login:{address}:{hashlib.sha256(username).hexdigest()}",
            settings.CHAT_LOGIN_FAILURES_PER_USERNAME,
            USERNAME_WINDOW,
        ),
        Window(f"chat:login:{address}", settings.CHAT_LOGIN_FAILURES_PER_ADDRESS, ADDRESS_WINDOW),
    ]


def _refusal(what: str, retry_after: int) -> str:
    minutes = math.ceil(retry_after / 60)
    return f"{what}. Try again in {minutes} minute{pluralize(minutes)}."


def _with_retry_after(response: HttpResponse, retry_after: int) -> HttpResponse:
    response["Retry-After"] = str(retry_after)
    return response


class LoginView(auth_views.LoginView):
    """Django's login; an address that failed too often is refused with 429 for a while.

    Each attempt is counted before the password is checked, so that attempts sent at once
    cannot all slip under the limit, and given back unless it was a wrong password.
    """

    redirect_authenticated_user = True

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            self.counted = limits.count(_login_windows(request))
        except WindowFull as full:
            return self._refused(full.retry_after)
        return super().post(request, *args, **kwargs)

    def form_valid(self, form: Any) -> HttpResponse:
        limits.uncount(self.counted)
        return super().form_valid(form)

    def form_invalid(self, form: Any) -> HttpResponse:
        if not form.has_error(NON_FIELD_ERRORS, "invalid_login"):
            limits.uncount(self.counted)  # a field left empty is no guess
        return super().form_invalid(form)

    def _refused(self, retry_after: int) -> HttpResponse:
        # Unbound: showing a bound form's errors would check the password after all.
        username = self.request.POST.get("username", "")
        form = self.get_form_class()(self.request, initial={"username": username})
        refusal = _refusal("Too many failed logins", retry_after)
        context = self.get_context_data(form=form, refusal=refusal)
        return _with_retry_after(self.render_to_response(context, status=429), retry_after)


@require_http_methods(["GET", "POST"])
async def signup(request: HttpRequest) -> HttpResponse:
    if not settings.CHAT_SIGNUP_OPEN:
        # Closed: say so, and refuse a POST all the same.
        return await _render(request, {"closed": True}, status=403)
    user = await request.auser()
    if user.is_authenticated:
        return HttpResponseRedirect(resolve_url(settings.LOGIN_REDIRECT_URL))
    if request.method == "POST":
        return await _sign_up(request)
    return await _render(request, {"form": SignupForm()}, status=200)


async def _sign_up(request: HttpRequest) -> HttpResponse:
    # Counted first, so that sign-ups sent at once cannot all slip under the limit.
    window = Window(
        f"chat:signup:{client_address(request)}", settings.CHAT_SIGNUPS_PER_ADDRESS, ADDRESS_WINDOW
    )
    try:
        counted = await sync_to_async(limits.count)([window])
    except WindowFull as full:
        form = SignupForm(initial={"username": request.POST.get("username", "")})
        refusal = _refusal("Too many accounts were made from your address", full.retry_after)
        response = await _render(request, {"form": form, "refusal": refusal}, status=429)
        return _with_retry_after(response, full.retry_after)
    form = SignupForm(request.POST)
    # is_valid reads the database (is the username taken?) and runs the password validators.
    if not await sync_to_async(form.is_valid)():
        await sync_to_async(limits.uncount)(counted)  # only accounts made count
        return await _render(request, {"form": form}, status=422)
    user = await sync_to_async(_create_user)(form)
    await alogin(request, user)
    if user.is_superuser:
        messages.success(request, "Welcome! As the first account you are the site's administrator.")
    return HttpResponseRedirect(resolve_url(settings.LOGIN_REDIRECT_URL))


def _create_user(form: SignupForm) -> Any:
    """Save the new user; the first account of the site becomes its superuser."""
    with transaction.atomic():
        # Two first sign-ups at once must not both find the site without users.
        db.serialize_transaction("first-signup")
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
