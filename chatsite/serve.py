"""
The production server: `python -m chatsite.serve` (what `make serve` runs).

uvicorn with uvloop and httptools (why: docs/deploy.md, "Workers"), with
WEB_CONCURRENCY worker processes sharing one socket. Several workers need REDIS_URL,
so that any of them can serve the stream of an answer another one runs.

On SIGTERM each worker stops accepting, gives open streams SERVE_DRAIN_SECONDS to end
(a reader cut off reconnects to another worker and resumes), then gives running answers
CHAT_SHUTDOWN_GRACE seconds to finish (chat/lifespan.py) before storing the rest as
interrupted.
"""

import os
import sys

import uvicorn
from django.conf import settings


def whole_number(name: str, default: int, minimum: int) -> int:
    """Read a whole number from the environment, or stop saying what is wrong."""
    raw = os.environ.get(name) or str(default)
    if not raw.isdigit() or int(raw) < minimum:
        sys.exit(f"{name} must be a whole number of at least {minimum}, not {raw!r}")
    return int(raw)


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
    workers = whole_number("WEB_CONCURRENCY", os.cpu_count() or 1, minimum=1)
    port = whole_number("PORT", 8000, minimum=1)
    drain = whole_number("SERVE_DRAIN_SECONDS", 3, minimum=0)
    # Reading a setting loads them all: a bad one stops here, before any worker starts.
    if workers > 1 and settings.CHAT_EVENT_LOG == "memory":
        sys.exit(
            f"WEB_CONCURRENCY={workers} needs REDIS_URL: with the in-process event log, "
            "a stream could only be read from the worker running its answer."
        )
    uvicorn.run(
        "chatsite.asgi:application",
        host=os.environ.get("HOST", "127.0.0.1"),
        port=port,
        workers=workers,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        timeout_graceful_shutdown=drain,
        # Django's LOGGING formats uvicorn's lines too (JSON in production).
        log_config=None,
        # X-Forwarded-For/-Proto are believed only from FORWARDED_ALLOW_IPS (uvicorn's
        # own variable; 127.0.0.1 by default): the proxy in front, nothing else.
        proxy_headers=True,
    )


if __name__ == "__main__":
    main()
