"""A reader's wake-up: set by the producer or over at its limit; one timer for all its waits."""

import asyncio

import pytest

from chat.eventlog.wakeup import Wakeup

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "uvloop"])
def anyio_backend(request):
    """asyncio's own loop and uvloop (uvicorn's in production, whose timers count in ms)."""
    return ("asyncio", {"use_uvloop": request.param == "uvloop"})


async def timed_wait(wakeup: Wakeup, seconds: float) -> tuple[bool, float]:
    loop = asyncio.get_running_loop()
    start = loop.time()
    woken = await wakeup.wait(seconds)
    return woken, loop.time() - start


async def test_a_wakeup_set_before_the_wait_ends_it_at_once():
    wakeup = Wakeup()
    wakeup.set()

    assert await timed_wait(wakeup, 5) == (True, pytest.approx(0, abs=0.05))
    wakeup.close()


async def test_a_wakeup_set_during_the_wait_ends_it():
    wakeup = Wakeup()
    asyncio.get_running_loop().call_later(0.05, wakeup.set)

    woken, waited = await timed_wait(wakeup, 5)

    assert woken and 0.04 <= waited < 1
    wakeup.close()


async def test_a_wait_that_nobody_ends_gives_up_at_its_limit():
    wakeup = Wakeup()

    woken, waited = await timed_wait(wakeup, 0.1)

    assert not woken and 0.09 <= waited < 1
    wakeup.close()


async def test_a_cleared_wakeup_waits_again():
    wakeup = Wakeup()
    wakeup.set()
    wakeup.clear()

    assert not await wakeup.wait(0.02)
    wakeup.close()


async def test_each_wait_gets_its_whole_time_after_the_timer_of_an_earlier_one():
    # The timer set for the first wait fires during the second, which began later.
    wakeup = Wakeup()
    loop = asyncio.get_running_loop()
    loop.call_later(0.1, wakeup.set)
    assert await wakeup.wait(0.2)
    wakeup.clear()

    woken, waited = await timed_wait(wakeup, 0.2)

    assert not woken and waited >= 0.19
    wakeup.close()


async def test_a_shorter_wait_after_a_longer_one_gives_up_at_its_own_limit():
    wakeup = Wakeup()
    asyncio.get_running_loop().call_later(0.02, wakeup.set)
    assert await wakeup.wait(30)
    wakeup.clear()

    woken, waited = await timed_wait(wakeup, 0.1)

    assert not woken and 0.09 <= waited < 1
    wakeup.close()


@pytest.mark.parametrize("seconds", [15, 15.0006])  # a limit between uvloop's milliseconds
async def test_a_reader_woken_for_every_token_sets_one_timer(monkeypatch, seconds):
    loop = asyncio.get_running_loop()
    timers = []
    call_at = loop.call_at
    monkeypatch.setattr(loop, "call_at", lambda *args: timers.append(args) or call_at(*args))
    wakeup = Wakeup()

    for _ in range(100):
        loop.call_soon(wakeup.set)
        assert await wakeup.wait(seconds)
        wakeup.clear()

    assert len(timers) == 1
    wakeup.close()


async def test_a_closed_wakeup_cancels_its_timer(monkeypatch):
    loop = asyncio.get_running_loop()
    timers = []
    call_at = loop.call_at
    monkeypatch.setattr(loop, "call_at", lambda *args: timers.append(call_at(*args)) or timers[-1])
    wakeup = Wakeup()
    loop.call_soon(wakeup.set)
    assert await wakeup.wait(15)

    wakeup.close()

    assert [timer.cancelled() for timer in timers] == [True]


async def test_closing_a_wakeup_ends_a_wait_in_progress():
    wakeup = Wakeup()
    asyncio.get_running_loop().call_later(0.02, wakeup.close)

    assert await timed_wait(wakeup, 30) == (False, pytest.approx(0.02, abs=0.5))


async def test_a_wakeup_refuses_a_second_reader():
    wakeup = Wakeup()
    first = asyncio.create_task(wakeup.wait(30))
    await asyncio.sleep(0)

    with pytest.raises(RuntimeError):
        await wakeup.wait(30)
    wakeup.set()
    assert await first
    wakeup.close()
