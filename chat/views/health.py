"""Liveness and readiness for load balancers: no session, no CSRF, never cached."""

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_safe

from chat import health


def uncached(payload: dict[str, object], status: int = 200) -> JsonResponse:
    response = JsonResponse(payload, status=status)
    response["Cache-Control"] = "no-store"
    return response


# csrf_exempt: a POST must get 405 from require_safe, not 403 from the CSRF check.
@csrf_exempt
@require_safe
async def healthz(request: HttpRequest) -> JsonResponse:
    """The process is up and serving requests."""
    return uncached({"status": "ok"})


@csrf_exempt
@require_safe
async def readyz(request: HttpRequest) -> JsonResponse:
    """The process can reach its database and Redis: send it traffic."""
    checks = await health.readiness()
    if all(result == "ok" for result in checks.values()):
        return uncached({"status": "ok", "checks": checks})
    return uncached({"status": "unavailable", "checks": checks}, status=503)
