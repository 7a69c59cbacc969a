"""
The event log: where a generation appends its events and where readers tail them.

Each generation's events are numbered 1, 2, 3 ... in the order they were appended.
`read(generation_id, after)` replays the events after an id and then follows new ones
until the terminal event. The log also carries cancels, the producer's liveness and the
readers' presence. Two backends: this process's memory (the embedded default) and Redis
Streams (CHAT_EVENT_LOG=redis, the default when REDIS_URL is set).
"""

from functools import cache
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from chat.eventlog.base import EventLog, EventLogUnavailable, LogClosed, UnknownGeneration
from chat.eventlog.memory import MemoryEventLog
from chat.eventlog.redis_streams import RedisEventLog

__all__ = [
    "EventLog",
    "EventLogUnavailable",
    "LogClosed",
    "UnknownGeneration",
    "get_event_log",
]

BACKENDS: dict[str, type[EventLog]] = {"memory": MemoryEventLog, "redis": RedisEventLog}


@cache
def get_event_log() -> EventLog:
    return BACKENDS[settings.CHAT_EVENT_LOG]()


@receiver(setting_changed)
def _forget_backend(*, setting: str, **kwargs: Any) -> None:
    if setting == "CHAT_EVENT_LOG":
        get_event_log.cache_clear()
