from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from chat.events import Event, Part

# The most events one read hands a reader at once: one chunk on the wire, bounded.
BATCH = 1000


class UnknownGeneration(LookupError):
    """The log holds nothing for this generation: it ended, or its producer is gone."""


class EventLogUnavailable(Exception):
    """The log's store (Redis) failed or could not be reached."""


class LogClosed(Exception):
    """The generation's terminal event is already in the log: nothing may follow it."""


class EventLog(Protocol):
    async def open(self, generation_id: str) -> None:
        """Start an empty log for a generation about to run."""

    async def append(self, generation_id: str, parts: Sequence[Part]) -> int:
        """Add the parts as the next events, all at once, and wake the readers.

        Returns the id of the last. A terminal part may only come last; after it, and
        after a seal, only a terminal part, nothing more is taken (LogClosed).
        """

    def read(self, generation_id: str, after: int, idle: float) -> AsyncIterator[list[Event]]:
        """Yield the events after `after` until the terminal event, in batches.

        A batch is every event the log holds when the reader wakes (at most BATCH), so a
        reader that falls behind catches up in one step; an empty batch says nothing came
        for `idle` seconds (the caller's heartbeat). Raises UnknownGeneration, at once or
        later, when the log is gone or its producer died without ending it.
        """

    async def events(self, generation_id: str) -> list[Event]:
        """Return every event so far."""

    async def seal(self, generation_id: str) -> list[Event]:
        """Refuse the producer's further parts (LogClosed) and return every event so far.

        For ending an answer from outside its producer: what the log returns is then all
        its readers can have seen, and only the terminal event may follow.
        """

    async def last_id(self, generation_id: str) -> int | None:
        """Return the id of the newest event, 0 for none yet, None for an unknown log."""

    async def cancel(self, generation_id: str) -> None:
        """Ask the generation to stop."""

    async def wait_cancelled(self, generation_id: str) -> None:
        """Return once the generation has been asked to stop."""

    async def keep_alive(self, generation_id: str) -> None:
        """Say, as the producer, that it is still running (call every liveness interval)."""

    async def producer_alive(self, generation_id: str) -> bool:
        """Tell whether the generation's producer is still running."""

    async def touch_reader(self, generation_id: str) -> None:
        """Say, as a reader, that someone is still reading."""

    async def last_read(self, generation_id: str) -> float | None:
        """Return when a reader last said so (a Unix time), None if never."""

    async def close(self, generation_id: str) -> None:
        """End the log once the terminal event is stored in the database."""
