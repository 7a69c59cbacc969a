"""Error responses: JSON under /api/, OpenAI's error objects under /v1/, Django's pages
elsewhere."""

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from django.views.csrf import csrf_failure as default_csrf_failure

from chat.openai_wire import error_body
from chat.views.responses import json_error


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith(("/api/", "/v1/"))


def _error(request: HttpRequest, status: int, code: str, message: str) -> HttpResponse:
    if request.path.startswith("/v1/"):
        return JsonResponse(error_body(message, code), status=status)
    return json_error(status, code, message)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    if _is_api(request):
        message = f"CSRF check failed: {reason}. Send X-CSRFToken, or an API key."
        return _error(request, 403, "csrf_failed", message)
    return default_csrf_failure(request, reason)


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    # Django answers here for a body it cannot parse (a broken multipart form, too many
    # fields, too large) before any view, or the CSRF check, has run.
    if _is_api(request):
        return _error(request, 400, "bad_request", "The request could not be read.")
    return defaults.bad_request(request, exception)


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_api(request):
        return _error(request, 404, "not_found", "Nothing is here.")
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    if _is_api(request):
        return _error(request, 500, "server_error", "Something went wrong on our side.")
    return defaults.server_error(request)
