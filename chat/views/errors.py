"""Error responses: JSON under /api/, Django's pages elsewhere."""

from django.http import HttpRequest, HttpResponse
from django.views import defaults
from django.views.csrf import csrf_failure as default_csrf_failure

from chat.views.responses import json_error


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    if _is_api(request):
        return json_error(403, "csrf_failed", f"CSRF check failed: {reason}. Send X-CSRFToken.")
    return default_csrf_failure(request, reason)


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    # Django answers here for a body it cannot parse (a broken multipart form, too many
    # fields, too large) before any view, or the CSRF check, has run.
    if _is_api(request):
        return json_error(400, "bad_request", "The request could not be read.")
    return defaults.bad_request(request, exception)


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_api(request):
        return json_error(404, "not_found", "Nothing is here.")
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    if _is_api(request):
        return json_error(500, "server_error", "Something went wrong on our side.")
    return defaults.server_error(request)
