"""
How a reader of an answer waits for its next events: woken by the producer, or by its
own time limit (the heartbeat's, the liveness check's).

A reader waits once per token or so. The Redis follower's `asyncio.timeout`, made and
cancelled for each wait, was half of what a wait cost (timed alone: 15 µs a wake, 7
without), so each reader keeps one timer: a wake leaves it running, and when it fires
before the current wait's limit it is set again for that limit.
"""

import asyncio

# Timers keep time in milliseconds (uvloop's), so may fire a little early or late: a wait
# this close to its limit is over, and a timer this close to it will do.
_SLACK = 0.002


class Wakeup:
    """One reader's signal: set by whoever has news, awaited by the reader alone."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._set = False
        self._waiter: asyncio.Future[bool] | None = None
        self._limit = 0.0  # when the wait in progress gives up, in the loop's time
        self._timer: asyncio.TimerHandle | None = None

    def set(self) -> None:
        self._set = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(True)

    def clear(self) -> None:
        self._set = False

    async def wait(self, seconds: float) -> bool:
        """Wait until set; False if `seconds` passed first. Returns at once when set."""
        if self._set:
            return True
        if self._waiter is not None:
            raise RuntimeError("a wakeup has one reader: it is already waited for")
        self._limit = self._loop.time() + seconds
        if self._timer is None or self._timer.when() > self._limit + _SLACK:
            self._rearm()
        self._waiter = self._loop.create_future()
        try:
            return await self._waiter
        finally:
            self._waiter = None

    def close(self) -> None:
        """Stop the timer: the reader is gone (a wait still in progress gives up)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(False)

    def _rearm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_at(self._limit, self._fired)

    def _fired(self) -> None:
        self._timer = None
        waiter = self._waiter
        if waiter is None or waiter.done():
            return  # no wait in progress: the next one sets the timer
        if self._limit - self._loop.time() > _SLACK:
            self._rearm()  # the wait began after the timer was set: its limit is later
        else:
            waiter.set_result(False)
