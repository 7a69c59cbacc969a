"""
An answer's deadline over its steps (each token read from the model, each step of a
tool), with one timer for all of them.

`asyncio.timeout_at()` around each step would arm and cancel a timer per token. A
Deadline arms its timer at its first step. When it fires, the task in a step then is
cancelled, and that step raises TimeoutError, as under asyncio.timeout_at(); a step
begun after the deadline (or after the timer fired: uvloop may fire it a fraction of a
millisecond early) raises TimeoutError without taking an item. The steps may run in
different tasks (an async generator's consumer may change), one at a time.
"""

import asyncio
from collections.abc import AsyncIterator


class Deadline:
    def __init__(self, when: float) -> None:
        self.when = when  # on the event loop's clock
        self._timer: asyncio.TimerHandle | None = None
        self._stepping: asyncio.Task[object] | None = None
        self._expired = False
        self._expired_in: asyncio.Task[object] | None = None  # the task the timer cancelled

    async def next[T](self, items: AsyncIterator[T]) -> T:
        """Return the next item, within the deadline (StopAsyncIteration at the end)."""
        loop = asyncio.get_running_loop()
        if self._expired or loop.time() >= self.when:
            raise TimeoutError
        if self._stepping is not None:
            raise RuntimeError("a deadline's steps run one at a time")
        task = asyncio.current_task()
        assert task is not None
        if self._timer is None:
            self._timer = loop.call_at(self.when, self._expire)
        cancelling = task.cancelling()
        self._stepping = task
        try:
            item = await anext(items)
        except BaseException as exc:
            if self._took_back(task, cancelling) and isinstance(exc, asyncio.CancelledError):
                raise TimeoutError from exc
            raise
        finally:
            self._stepping = None
        self._took_back(task, cancelling)  # a step that ignored the cancel
        return item

    def close(self) -> None:
        """Stop the timer, once the steps are over."""
        if self._timer is not None:
            self._timer.cancel()

    def _expire(self) -> None:
        self._expired = True
        if self._stepping is not None:
            self._expired_in = self._stepping
            self._stepping.cancel()

    def _took_back(self, task: asyncio.Task[object], cancelling: int) -> bool:
        """Withdraw the timer's cancel of `task`, if any; tell whether it was the only
        cancel beyond those it had at the step's start (as asyncio.timeout tells)."""
        if self._expired_in is not task:
            return False
        self._expired_in = None
        return task.uncancel() <= cancelling
