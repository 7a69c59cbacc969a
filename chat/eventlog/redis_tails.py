"""
What Redis pushes to the readers of one event loop: the append script publishes each
append's events on its answer's channel (`chat:tail:<id>`), and one connection per loop
subscribes to the channels of every answer the loop's readers follow. A reader waits for
a push instead of sending a blocking XREAD of its own each time it wakes.

A push is a shortcut, never the record: one published while the subscription was being
made, or while its connection was broken, is lost without a word. So a reader reads the
stream itself after its last id whenever a push could be missing (see Follower).
"""

import asyncio
import contextlib
import logging
import time
import uuid
import weakref
from typing import Any

import redis.asyncio as redis
from django.conf import settings

from chat.eventlog.base import BATCH
from chat.eventlog.redis_shared import PerLoop, event_data, get_client, new_client, of_this_loop
from chat.eventlog.wakeup import Wakeup
from chat.events import Event

logger = logging.getLogger(__name__)

# Seconds between attempts to subscribe again after the connection failed.
RECONNECT_DELAY = 0.5


class Follower:
    """One reader's share of its answer's channel: the events pushed since it last took
    them, or word that it must read the stream itself: when it starts, when its channel's
    subscription is confirmed (again), when the connection is dropped, when the pushed ids
    skip one, when a push cannot be read, when it lags."""

    def __init__(self) -> None:
        self._pushed: list[Event] = []
        self._resync = True
        self._woken = Wakeup()
        self._woken.set()

    async def wait(self, seconds: float) -> bool:
        """Wait for a push or a resync; False if `seconds` passed first."""
        return await self._woken.wait(seconds)

    def close(self) -> None:
        self._woken.close()

    def take(self, position: int) -> list[Event] | None:
        """The pushed events after `position`; None when the stream must be read instead."""
        pushed, self._pushed = self._pushed, []
        self._woken.clear()
        if self._resync:
            self._resync = False
            return None
        events = [event for event in pushed if event.id is not None and event.id > position]
        if events and events[0].id != position + 1:
            return None  # a push was lost
        return events

    def push(self, events: list[Event]) -> None:
        if len(self._pushed) + len(events) > BATCH:  # it lags: it reads the stream instead
            self._pushed = []
            self.must_resync()
        else:
            self._pushed += events
            self._woken.set()

    def must_resync(self) -> None:
        self._resync = True
        self._woken.set()


class Tails:
    """The one subscription of an event loop. Only its listening task uses the pubsub
    connection (redis-py's PubSub reconnects from whichever call fails, and two calls at
    once would both reconnect it): a follower of a channel not yet subscribed wakes the
    listener through a channel of its own."""

    def __init__(self) -> None:
        # The connection's name in Redis's CLIENT LIST, and its wake channel's.
        self.name = f"chat-tails-{uuid.uuid4().hex}"
        self._pubsub = new_client(self.name).pubsub()
        self._followers: dict[str, set[Follower]] = {}
        self._subscribed: set[str] = set()  # as sent; Redis confirms each in order
        self._listening: asyncio.Task[None] | None = None
        self._reading = False  # blocked in get_message(): a new channel must wake it
        self._woken = False
        self._heard = 0.0  # when the connection last said anything

    async def follow(self, channel: str) -> Follower:
        follower = Follower()
        self._followers.setdefault(channel, set()).add(follower)
        if self._listening is None:
            self._listening = asyncio.create_task(self._listen())
        elif self._reading and not self._woken and channel not in self._subscribed:
            self._woken = True
            try:
                await get_client().publish(self.name, "")
            except BaseException:
                self._woken = False
                self.unfollow(channel, follower)
                raise
        return follower

    def unfollow(self, channel: str, follower: Follower) -> None:
        # The listener unsubscribes when it next wakes; pushes meanwhile are dropped.
        followers = self._followers.get(channel, set())
        followers.discard(follower)
        follower.close()
        if not followers:
            self._followers.pop(channel, None)

    async def _listen(self) -> None:
        # Ends once nothing is followed and no answer's channel is subscribed; the
        # connection stays (subscribed to the wake channel alone, unless it was dropped)
        # for the next follower.
        self._heard = time.monotonic()
        try:
            while await self._step():
                pass
        finally:
            self._listening = None
            self._reading = self._woken = False

    async def _step(self) -> bool:
        """Subscribe as followed, then take one message (or ping); False once idle."""
        try:
            if not self._followers and self._subscribed <= {self.name}:
                return False
            while self._wanted() != self._subscribed:
                await self._subscribe_as_wanted()
            if not self._followers:
                return False
            self._reading = True
            message = await self._pubsub.get_message(timeout=settings.CHAT_LIVENESS_INTERVAL)
            self._reading = self._woken = False
            if message is not None:
                self._heard = time.monotonic()
                self._take(message)
            elif time.monotonic() - self._heard > 3 * settings.CHAT_LIVENESS_INTERVAL:
                await self._start_over("no answer to its pings")
            else:
                await self._pubsub.ping()
        except redis.RedisError as exc:
            await self._start_over(f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # a bug of ours: its traceback too
            logger.exception("Redis pushes to readers failed")
            await self._start_over(f"{type(exc).__name__}: {exc}")
        return True

    def _wanted(self) -> set[str]:
        return {*self._followers, self.name}

    async def _subscribe_as_wanted(self) -> None:
        wanted = self._wanted()
        joining, leaving = wanted - self._subscribed, self._subscribed - wanted
        self._subscribed = wanted
        if joining:
            await self._pubsub.subscribe(*joining)
        if leaving:
            await self._pubsub.unsubscribe(*leaving)

    async def _start_over(self, reason: str) -> None:
        """Drop the connection; every follower reads the stream (where its own read
        reports a Redis that is down) and is told again once its channel is back."""
        logger.warning("Redis pushes to readers stopped (%s); subscribing again", reason)
        self._reading = self._woken = False
        self._subscribed.clear()
        for followers in self._followers.values():
            for follower in followers:
                follower.must_resync()
        with contextlib.suppress(Exception):  # it is being dropped
            await self._pubsub.aclose()
        await asyncio.sleep(RECONNECT_DELAY)
        self._heard = time.monotonic()

    def _take(self, message: dict[str, Any]) -> None:
        followers = self._followers.get(message["channel"], ())
        if message["type"] == "subscribe":
            for follower in followers:
                follower.must_resync()
        elif message["type"] == "message" and followers:
            try:
                events = pushed_events(message["data"])
            except ValueError:
                logger.warning("unreadable push on %s: %.200r", message["channel"], message)
                events = []
            for follower in followers:
                if events:
                    follower.push(events)
                else:
                    follower.must_resync()


_tails: PerLoop[Tails] = weakref.WeakKeyDictionary()


def tails() -> Tails:
    return of_this_loop(_tails, Tails)


def pushed_events(payload: str) -> list[Event]:
    """Parse what the append script publishes: the first event's id, then each event's
    kind and data, one per line (compact JSON holds no raw newline)."""
    first, *fields = payload.split("\n")
    numbers = range(int(first), int(first) + len(fields) // 2)
    return [
        Event(number, kind, event_data(kind, data))
        for number, kind, data in zip(numbers, fields[::2], fields[1::2], strict=True)
    ]
