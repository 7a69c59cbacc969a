"""
Django's own middleware, run on the event loop.

Under ASGI, Django runs each hook of a middleware that is not async-native in a thread:
one hop per hook and request, about ten per request with the middleware this site uses,
each a round trip through the request's executor thread. The hooks of these do no I/O
(headers, cookies, lazy objects), so they run where they are called. What does I/O still
goes to a thread (the request's; for the API, which has none, asgiref's process-wide
one): the session's save, once the session was modified, and the messages' store, once
messages were read or added.
"""

from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import middleware as auth
from django.contrib.messages import middleware as messages
from django.contrib.sessions import middleware as sessions
from django.http import HttpRequest, HttpResponseBase
from django.middleware import clickjacking, common, csp, csrf, security

from chat import api_keys


class InlineMixin:
    """Run process_request and process_response on the loop, not in a thread."""

    get_response: Any

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        response = None
        if hasattr(self, "process_request"):
            response = self.process_request(request)
        response = response or await self.get_response(request)
        if hasattr(self, "process_response"):
            response = self.process_response(request, response)
        return response  # type: ignore[no-any-return]  # the hooks are Django's, untyped here


class SecurityMiddleware(InlineMixin, security.SecurityMiddleware):
    pass


class ContentSecurityPolicyMiddleware(InlineMixin, csp.ContentSecurityPolicyMiddleware):
    pass


class CommonMiddleware(InlineMixin, common.CommonMiddleware):
    pass


class CsrfViewMiddleware(InlineMixin, csrf.CsrfViewMiddleware):
    """Django's CSRF check, except for a request to the API that brings an API key.

    Such a request is the key's owner's or no one's (chat/views/decorators.py): its
    session cookie, if any, is not read, and a key is no ambient credential that a page
    of another site could make a browser send.
    """

    # Reads the token from a header, a cookie or the form already in memory (not the
    # session: CSRF_USE_SESSIONS is off).
    async def process_view(  # type: ignore[override]  # async: Django awaits it on the loop
        self, request: HttpRequest, callback: Any, callback_args: Any, callback_kwargs: Any
    ) -> HttpResponseBase | None:
        if api_keys.bearer_secret(request) is not None:
            return None
        return super().process_view(request, callback, callback_args, callback_kwargs)


class AuthenticationMiddleware(InlineMixin, auth.AuthenticationMiddleware):
    pass


class XFrameOptionsMiddleware(InlineMixin, clickjacking.XFrameOptionsMiddleware):
    pass


class SessionMiddleware(sessions.SessionMiddleware):
    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        self.process_request(request)
        response = await self.get_response(request)  # type: ignore[misc]  # async here
        if request.session.modified or settings.SESSION_SAVE_EVERY_REQUEST:
            return await sync_to_async(self.process_response)(request, response)  # it saves
        return self.process_response(request, response)


class MessageMiddleware(messages.MessageMiddleware):
    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        self.process_request(request)
        response = await self.get_response(request)  # type: ignore[misc]  # async here
        storage = request._messages  # type: ignore[attr-defined]  # set by process_request
        if storage.used or storage.added_new:
            return await sync_to_async(self.process_response)(request, response)  # it stores
        return self.process_response(request, response)
