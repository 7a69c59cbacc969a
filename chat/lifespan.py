"""The ASGI lifespan protocol: nothing to do at start-up; at shutdown, end the answers and
close the connections to the model."""

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from django.conf import settings

from chat import completions, generation, provider

logger = logging.getLogger(__name__)

type Scope = dict[str, Any]
type Receive = Callable[[], Awaitable[dict[str, Any]]]
type Send = Callable[[Mapping[str, Any]], Awaitable[None]]


async def lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            logger.info("shutting down: running answers have %ss", settings.CHAT_SHUTDOWN_GRACE)
            await generation.shutdown(settings.CHAT_SHUTDOWN_GRACE)
            await completions.wait_all()  # the usage of stateless answers cut off
            await provider.close_clients()
            await send({"type": "lifespan.shutdown.complete"})
            return
