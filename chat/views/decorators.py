"""
What every view shares before its own code runs: the method, the user, and what its
refusals look like.

`api_view` serves the JSON API (JSON errors, 401 for no session); `page_view` serves
pages (the login page for no session). Both resolve the user once, in one trip to a
thread, and set it as `request.user`, so that a view reads a plain `AuthenticatedRequest`.

The API's requests run without a thread of their own (chat/handler.py): their database
work goes through db.run to the event loop's worker threads, which keep their SQLite
connections, instead of a thread started, connected and joined for each request.
"""

import contextlib
import functools
from collections.abc import Callable, Coroutine
from typing import Any, Concatenate

from django.contrib import auth
from django.contrib.auth.models import User
from django.contrib.auth.views import redirect_to_login
from django.db import DatabaseError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.views.decorators.http import require_http_methods

from chat import api_keys, db, limits, refusals
from chat.models import ApiKey
from chat.refusals import Refused
from chat.views.responses import BadRequest, json_error, refusal


class AuthenticatedRequest(HttpRequest):
    """A request from a logged-in user, resolved by api_view or page_view; on the API,
    by an API key instead (`api_key`, else None)."""

    user: User
    api_key: ApiKey | None


type Response = Coroutine[Any, Any, HttpResponseBase]
type View[**P] = Callable[Concatenate[AuthenticatedRequest, P], Response]
type Wrapped[**P] = Callable[Concatenate[HttpRequest, P], Response]


class NotLoggedIn(Exception):
    """The request has no session: the API answers 401."""


class BadKey(Refused):
    """The request's API key is wrong, revoked or expired (401), or its address has
    guessed too often (429)."""


async def _logged_in(request: HttpRequest) -> AuthenticatedRequest | None:
    # The session and its user in one trip (request.auser() makes one for each).
    user = await db.run(auth.get_user, request)
    if not user.is_authenticated:
        return None
    request.user = user
    request.api_key = None  # type: ignore[attr-defined]  # AuthenticatedRequest's
    return request  # type: ignore[return-value]  # its user is now a User


async def logged_in(request: HttpRequest) -> AuthenticatedRequest:
    """Return the request with its user resolved: by its API key if it brings one, else
    by its session; or raise NotLoggedIn or BadKey."""
    secret = api_keys.bearer_secret(request)
    if secret is not None:
        return await _by_key(request, secret)
    authenticated = await _logged_in(request)
    if authenticated is None:
        raise NotLoggedIn
    return authenticated


async def _by_key(request: HttpRequest, secret: str) -> AuthenticatedRequest:
    # Only wrong keys count (a script's many right ones must not lock it out); an
    # address past the limit is refused before its key is looked at.
    window = api_keys.guess_window(limits.client_address(request))
    if (wait := await db.run(limits.retry_after, window)) is not None:
        raise BadKey(429, "too_many_attempts", "Too many wrong keys from here.", wait)
    key = await db.run(api_keys.authenticate, secret)
    if key is None:
        with contextlib.suppress(limits.WindowFull):
            await db.run(limits.count, [window])
        raise BadKey(401, "invalid_api_key", "The API key is wrong, revoked or expired.")
    if api_keys.unnoted_use(key):
        with contextlib.suppress(db.WritesBusy):  # noted on a later use
            await db.write(api_keys.note_use, key)
    request.user = key.user
    request.api_key = key  # type: ignore[attr-defined]  # AuthenticatedRequest's
    return request  # type: ignore[return-value]  # its user is now a User


def _json_errors[R: HttpRequest, **P](
    methods: tuple[str, ...], view: Callable[Concatenate[R, P], Response]
) -> Callable[Concatenate[R, P], Response]:
    """Allow only `methods`, and answer what the view raises as JSON errors."""

    @functools.wraps(view)
    async def wrapper(request: R, /, *args: P.args, **kwargs: P.kwargs) -> HttpResponseBase:
        if request.method not in methods:
            refused = json_error(405, "method_not_allowed", f"Use {' or '.join(methods)} here.")
            refused["Allow"] = ", ".join(methods)
            return refused
        try:
            return await view(request, *args, **kwargs)
        except NotLoggedIn:
            return json_error(401, "not_authenticated", "Log in to use the API.")
        except BadRequest as exc:
            return json_error(400, exc.code, exc.message)
        except Refused as exc:
            return refusal(exc)
        except Http404 as exc:
            return json_error(404, "not_found", str(exc) or "Nothing is here.")
        except DatabaseError as exc:
            if not db.overloaded(exc):
                raise
            return refusal(refusals.overloaded())

    return wrapper


# The views whose requests need no thread of their own (chat/handler.py).
THREADLESS: set[Callable[..., Any]] = set()


def api_view[**P](*methods: str) -> Callable[[View[P]], Wrapped[P]]:
    """Make an async view an API endpoint: allowed methods, a session, JSON errors, and
    no thread of its own."""

    def decorator(view: View[P]) -> Wrapped[P]:
        async def with_session(
            request: HttpRequest, /, *args: P.args, **kwargs: P.kwargs
        ) -> HttpResponseBase:
            return await view(await logged_in(request), *args, **kwargs)

        wrapped = _json_errors(methods, functools.wraps(view)(with_session))
        THREADLESS.add(wrapped)
        return wrapped

    return decorator


def api_stream_view[**P](view: Wrapped[P]) -> Wrapped[P]:
    """An API endpoint for GET that authenticates on its own (chat/stream_access.py).

    Its requests run without a thread of their own (chat/handler.py): all its database
    work goes through db.run.
    """
    wrapped = _json_errors(("GET",), view)
    THREADLESS.add(wrapped)
    return wrapped


def page_view[**P](*methods: str) -> Callable[[View[P]], Wrapped[P]]:
    """Make an async view a page: the login page first for no session, then the methods."""

    def decorator(view: View[P]) -> Wrapped[P]:
        allowed = require_http_methods(list(methods))(view)

        @functools.wraps(view)
        async def wrapper(
            request: HttpRequest, *args: P.args, **kwargs: P.kwargs
        ) -> HttpResponseBase:
            try:
                authenticated = await _logged_in(request)
                if authenticated is None:
                    return redirect_to_login(request.get_full_path())
                response: HttpResponseBase = await allowed(authenticated, *args, **kwargs)
            except DatabaseError as exc:
                if not db.overloaded(exc):
                    raise
                return _busy_page(refusals.overloaded())
            return response

        return wrapper  # type: ignore[return-value]  # wraps() keeps the view's own request type

    return decorator


def _busy_page(refused: Refused) -> HttpResponse:
    response = HttpResponse(refused.message, status=refused.status, content_type="text/plain")
    response["Retry-After"] = str(refused.retry_after)
    return response
