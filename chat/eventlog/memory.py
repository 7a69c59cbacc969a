import asyncio
import time
from collections.abc import AsyncIterator, Sequence

from chat.eventlog.base import BATCH, LogClosed, UnknownGeneration
from chat.eventlog.wakeup import Wakeup
from chat.events import Event, Part


class Channel:
    """One answer's events in memory, and the readers waiting for more."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.cancelled = asyncio.Event()
        self.last_read = time.time()
        self.closed = False
        self.sealed = False
        self._readers: set[Wakeup] = set()

    def append(self, parts: Sequence[Part]) -> int:
        ended = bool(self.events) and self.events[-1].is_terminal
        if ended or (self.sealed and not (len(parts) == 1 and parts[0].is_terminal)):
            raise LogClosed
        if any(part.is_terminal for part in parts[:-1]):
            raise ValueError("a terminal event can only come last")
        for part in parts:
            self.events.append(Event(len(self.events) + 1, part.kind, part.data))
        self._wake()
        return len(self.events)

    def close(self) -> None:
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        for reader in self._readers:
            reader.set()

    async def read(self, after: int, idle: float) -> AsyncIterator[list[Event]]:
        """Yield the events after `after` in batches, [] after `idle` s of nothing."""
        position = after
        wakeup = Wakeup()
        self._readers.add(wakeup)
        try:
            while True:
                wakeup.clear()
                beyond = len(self.events) > position or self.closed
                if not (beyond or await wakeup.wait(idle)):
                    yield []
                    continue
                if position >= len(self.events):
                    # Closed without a terminal event: the database knows how it ended.
                    raise UnknownGeneration
                batch = self.events[position : position + BATCH]
                position += len(batch)
                yield batch
                if batch[-1].is_terminal:
                    return
        finally:
            self._readers.discard(wakeup)
            wakeup.close()


class MemoryEventLog:
    """Events in this process's memory: one process, nothing to set up.

    The producer and its readers share the process, so a log that is still here has a
    live producer, and one that is gone (a restart) lost it.
    """

    def __init__(self) -> None:
        self._channels: dict[str, Channel] = {}

    def _channel(self, generation_id: str) -> Channel:
        try:
            return self._channels[generation_id]
        except KeyError:
            raise UnknownGeneration(generation_id) from None

    async def open(self, generation_id: str) -> None:
        self._channels[generation_id] = Channel()

    async def append(self, generation_id: str, parts: Sequence[Part]) -> int:
        return self._channel(generation_id).append(parts)

    async def read(self, generation_id: str, after: int, idle: float) -> AsyncIterator[list[Event]]:
        # Readers hold the channel itself, so they finish even once it is closed.
        channel = self._channel(generation_id)
        try:
            async for batch in channel.read(after, idle):
                yield batch
        except UnknownGeneration:
            raise UnknownGeneration(generation_id) from None

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
