"""Waiting for a condition in async tests, instead of sleeping a fixed time."""

import asyncio
import inspect
from collections.abc import Awaitable, Callable

LIMIT = 5.0  # seconds: far longer than any condition a test waits for should take


async def until(condition: Callable[[], bool | Awaitable[bool]]) -> None:
    """Return once condition() is true; fail the test after LIMIT seconds."""
    async with asyncio.timeout(LIMIT):
        while True:
            met = condition()
            if await met if inspect.isawaitable(met) else met:
                return
            await asyncio.sleep(0.01)
