"""
Ends the answers whose producing process vanished (a crash, a kill, a deploy).

Readers settle such an answer as soon as they notice; the sweeper does it for answers
nobody is reading. It runs once when a server process takes its first request and then
every CHAT_SWEEP_INTERVAL seconds; `manage.py sweep_generations` runs it by hand.
Each sweep also deletes the uploads nobody sent within a day (`manage.py sweep_attachments`).
"""

import asyncio
import contextvars
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponseBase
from django.utils import timezone
from django.utils.decorators import sync_and_async_middleware

from chat import attachments, db
from chat.ending import settle
from chat.eventlog import EventLogUnavailable, get_event_log
from chat.models import Generation

logger = logging.getLogger(__name__)

_started: set[asyncio.AbstractEventLoop] = set()


async def sweep() -> int:
    """End every running answer whose producer is gone; return how many were ended."""
    # A producer marks itself alive right after its row is written: give it that moment.
    settled = timezone.now() - timedelta(seconds=3 * settings.CHAT_LIVENESS_INTERVAL)
    running = Generation.objects.running().filter(created_at__lt=settled)
    log = get_event_log()
    ended = 0
    for generation_id in await db.run(list, running.values_list("pk", flat=True)):
        if not await log.producer_alive(str(generation_id)):
            await settle(generation_id)
            ended += 1
    if ended:
        logger.warning("sweeper ended %d answers whose process was gone", ended)
    return ended


async def _sweep_forever() -> None:
    while True:
        try:
            await sweep()
            await db.write(attachments.sweep_unsent)
        except (EventLogUnavailable, DatabaseError) as exc:
            logger.warning("sweep skipped: %s", exc)
        await asyncio.sleep(settings.CHAT_SWEEP_INTERVAL)


def start_once() -> None:
    """Start this event loop's periodic sweeper, unless it runs already or is disabled."""
    loop = asyncio.get_running_loop()
    if settings.CHAT_SWEEP_INTERVAL and loop not in _started:
        _started.add(loop)
        # A fresh context: not the first request's (its thread, its bounded writes).
        task = loop.create_task(_sweep_forever(), context=contextvars.Context())
        task.add_done_callback(lambda _: _started.discard(loop))


@sync_and_async_middleware
def SweeperMiddleware(
    get_response: Callable[[HttpRequest], Awaitable[HttpResponseBase]],
) -> Callable[[HttpRequest], Awaitable[HttpResponseBase]]:
    """Start the sweeper with the first request a process serves (Django has no start-up hook)."""
    if not iscoroutinefunction(get_response):
        return get_response  # under WSGI (the sync test client) there is no loop to run it

    async def middleware(request: HttpRequest) -> HttpResponseBase:
        start_once()
        return await get_response(request)

    return middleware
