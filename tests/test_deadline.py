"""An answer's deadline: one timer over its steps, TimeoutError as asyncio.timeout gives it."""

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from chat.deadline import Deadline

pytestmark = pytest.mark.anyio


async def items(*pauses: float) -> AsyncIterator[int]:
    """Yield 0, 1, ... each after its pause."""
    for number, pause in enumerate(pauses):
        await asyncio.sleep(pause)
        yield number


def after(seconds: float) -> Deadline:
    return Deadline(asyncio.get_running_loop().time() + seconds)


async def no_cancel_left() -> None:
    """This task has no cancel requested, and none is delivered at its next await."""
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0
    await asyncio.sleep(0)


async def test_steps_within_the_deadline_give_their_items_and_the_end():
    deadline = after(5)
    source = items(0, 0.01, 0)

    assert [await deadline.next(source) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(StopAsyncIteration):
        await deadline.next(source)
    deadline.close()


async def test_a_step_still_waiting_at_the_deadline_times_out_and_leaves_its_task_usable():
    deadline = after(0.05)
    source = items(0, 10)
    assert await deadline.next(source) == 0

    with pytest.raises(TimeoutError):
        await deadline.next(source)

    await no_cancel_left()


async def test_a_step_begun_after_the_deadline_times_out_without_taking_an_item():
    deadline = after(0.02)
    source = items(0, 0)
    await asyncio.sleep(0.05)

    with pytest.raises(TimeoutError):
        await deadline.next(source)
    assert await anext(source) == 0  # still there for whoever reads on


async def test_the_deadline_passing_between_steps_cancels_no_task():
    deadline = after(0.02)
    source = items(0, 0)
    assert await deadline.next(source) == 0

    await asyncio.sleep(0.05)  # the timer fires here, outside any step

    await no_cancel_left()


async def test_a_cancel_from_outside_a_step_stays_a_cancel():
    deadline = after(5)
    reading = asyncio.create_task(deadline.next(items(10)))
    await asyncio.sleep(0.01)

    reading.cancel()

    with pytest.raises(asyncio.CancelledError):
        await reading
    deadline.close()


async def test_a_cancel_from_outside_at_the_deadline_stays_a_cancel():
    deadline = after(0.02)
    reading = asyncio.create_task(deadline.next(items(10)))
    await asyncio.sleep(0)  # the step begins: the deadline's timer is armed
    # Right after the deadline's timer, in the same turn of the loop.
    asyncio.get_running_loop().call_at(deadline.when, reading.cancel)

    with pytest.raises(asyncio.CancelledError):
        await reading


async def test_the_step_waiting_at_the_deadline_times_out_whichever_task_runs_it():
    deadline = after(0.05)
    source = items(0, 10)
    assert await asyncio.create_task(deadline.next(source)) == 0
    other = asyncio.create_task(deadline.next(source))

    with pytest.raises(TimeoutError):
        await other


async def test_one_timer_serves_every_step():
    loop = asyncio.get_running_loop()
    armed = []
    call_at = loop.call_at

    def counted(when, callback, *args, **kwargs):
        armed.append(when)
        return call_at(when, callback, *args, **kwargs)

    loop.call_at = counted  # type: ignore[method-assign]
    try:
        deadline = after(5)
        source = items(*[0.0] * 50)
        for _ in range(50):
            await deadline.next(source)
    finally:
        del loop.call_at
    deadline.close()
    assert armed == [deadline.when]


async def test_a_step_that_swallows_the_timers_cancel_gives_its_item_and_leaves_no_cancel():
    async def stubborn() -> AsyncIterator[str]:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(10)
        yield "kept"

    deadline = after(0.02)

    assert await deadline.next(stubborn()) == "kept"
    await no_cancel_left()


async def test_a_step_after_the_timer_fired_times_out_even_if_the_clock_says_it_is_early():
    deadline = after(0.02)
    source = items(0, 0)
    assert await deadline.next(source) == 0
    await asyncio.sleep(0.05)  # the timer fires here
    deadline.when += 10  # as if it had fired early

    with pytest.raises(TimeoutError):
        await deadline.next(source)


async def test_steps_run_one_at_a_time():
    deadline = after(5)
    source = items(10, 0)
    first = asyncio.create_task(deadline.next(source))
    await asyncio.sleep(0)

    with pytest.raises(RuntimeError):
        await deadline.next(items(0))
    first.cancel()
    deadline.close()
