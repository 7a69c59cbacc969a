import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from chat.eventlog.base import LogClosed, UnknownGeneration
from chat.events import Event


class _Channel:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.cancelled = asyncio.Event()
        self.last_read = time.time()
        self.closed = False
        self.sealed = False
        self._grown = asyncio.Event()

    def append(self, kind: str, data: dict[str, Any]) -> Event:
        event = Event(len(self.events) + 1, kind, data)
        if (self.events and self.events[-1].is_terminal) or (self.sealed and not event.is_terminal):
            raise LogClosed
        self.events.append(event)
        # Wake every reader waiting now; later waiters get a fresh, unset event.
        self._grown.set()
        self._grown = asyncio.Event()
        return event

    def close(self) -> None:
        self.closed = True
        self._grown.set()

    async def wait_beyond(self, count: int) -> None:
        while len(self.events) <= count and not self.closed:
            await self._grown.wait()


class MemoryEventLog:
    """Events in this process's memory: one process, nothing to set up.

    The producer and its readers share the process, so a log that is still here has a
    live producer, and one that is gone (a restart) lost it.
    """

    def __init__(self) -> None:
        self._channels: dict[str, _Channel] = {}

    def _channel(self, generation_id: str) -> _Channel:
        try:
            return self._channels[generation_id]
        except KeyError:
            raise UnknownGeneration(generation_id) from None

    async def open(self, generation_id: str) -> None:
        self._channels[generation_id] = _Channel()

    async def append(self, generation_id: str, kind: str, data: dict[str, Any]) -> Event:
        return self._channel(generation_id).append(kind, data)

    async def read(self, generation_id: str, after: int) -> AsyncIterator[Event]:
        # Readers hold the channel itself, so they finish even once it is closed.
        channel = self._channel(generation_id)
        position = after
        while True:
            await channel.wait_beyond(position)
            if position == len(channel.events):
                # Closed without a terminal event: the database knows how it ended.
                raise UnknownGeneration(generation_id)
            while position < len(channel.events):
                event = channel.events[position]
                position += 1
                yield event
                if event.is_terminal:
                    return

    async def events(self, generation_id: str) -> list[Event]:
        return list(self._channel(generation_id).events)

    async def seal(self, generation_id: str) -> list[Event]:
        channel = self._channel(generation_id)
        channel.sealed = True
        return list(channel.events)

    async def last_id(self, generation_id: str) -> int | None:
        channel = self._channels.get(generation_id)
        return None if channel is None else len(channel.events)

    async def cancel(self, generation_id: str) -> None:
        self._channel(generation_id).cancelled.set()

    async def wait_cancelled(self, generation_id: str) -> None:
        await self._channel(generation_id).cancelled.wait()

    async def keep_alive(self, generation_id: str) -> None:
        self._channel(generation_id)

    async def producer_alive(self, generation_id: str) -> bool:
        return generation_id in self._channels

    async def touch_reader(self, generation_id: str) -> None:
        channel = self._channels.get(generation_id)
        if channel is not None:
            channel.last_read = time.time()

    async def last_read(self, generation_id: str) -> float | None:
        channel = self._channels.get(generation_id)
        return None if channel is None else channel.last_read

    async def close(self, generation_id: str) -> None:
        channel = self._channels.pop(generation_id, None)
        if channel is not None:
            channel.close()
