from collections.abc import AsyncIterator
from typing import Any, Protocol

from chat.sse import Event


class UnknownGeneration(LookupError):
    """The log holds nothing for this generation: it ended, or its owner is gone."""


class EventLog(Protocol):
    async def open(self, generation_id: str) -> None:
        """Start an empty log for a generation about to run."""

    async def append(self, generation_id: str, kind: str, data: dict[str, Any]) -> Event:
        """Add the next event and wake the readers; return it with its id."""

    def read(self, generation_id: str, after: int) -> AsyncIterator[Event]:
        """Yield the events after `after`, then new ones, until the terminal event."""

    async def last_id(self, generation_id: str) -> int | None:
        """Return the id of the newest event, 0 for none yet, None for an unknown log."""

    async def cancel(self, generation_id: str) -> None:
        """Ask the generation to stop."""

    async def wait_cancelled(self, generation_id: str) -> None:
        """Return once the generation has been asked to stop."""

    async def close(self, generation_id: str) -> None:
        """Forget a generation whose terminal event is stored in the database."""
