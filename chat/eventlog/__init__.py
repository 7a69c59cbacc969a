"""
The event log: where a generation appends its events and where readers tail them.

Each generation's events are numbered 1, 2, 3 ... in the order they were appended.
`read(generation_id, after)` replays the events after an id and then follows new ones
until the terminal event. The log is also how a cancel reaches the generation.
The embedded default keeps the log in this process's memory.
"""

from functools import cache

from chat.eventlog.base import EventLog, UnknownGeneration
from chat.eventlog.memory import MemoryEventLog

__all__ = ["EventLog", "UnknownGeneration", "get_event_log"]


@cache
def get_event_log() -> EventLog:
    return MemoryEventLog()
