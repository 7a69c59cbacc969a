"""
An answer's events: what the event log numbers and keeps, and what every wire format
encodes (chat/sse.py for our own streams).

An answer is a sequence of parts, each of a kind with its JSON data; numbered 1, 2, 3 ...
in the order they were produced, they are its events. The kinds:
- `delta`: `{"content": str}`, text appended to the answer;
- `reasoning`: `{"content": str}`, the model's thinking, appended to its reasoning;
- `tool_start`: `{"id", "name", "arguments"}`, a tool call about to run;
- `progress`: `{"id", "message", "fraction"}`, how far a running tool has got;
- `tool_end`: `{"id", "name", "result"}` or `{"id", "name", "error": {"code", "message"}}`;
- `tool_calls`: `{"calls": [{"id", "name", "arguments"}]}`, calls the model asked of the
  client, which sent its own tools (the OpenAI-compatible endpoint): never run here;
- `done`: `{"finish_reason", "message", "usage", "cached"}`, the end of a finished answer;
- `error`: `{"code", "message"}`, the end of a failed one (its text so far is kept).
A wire format that meets a kind it has no use for skips it, and says so in docs/api.md.
"""

from dataclasses import dataclass
from typing import Any, TypedDict

from chat.failures import Failure

DELTA = "delta"
REASONING = "reasoning"
TOOL_START = "tool_start"
PROGRESS = "progress"
TOOL_END = "tool_end"
CLIENT_TOOL_CALLS = "tool_calls"
DONE = "done"
ERROR = "error"
TERMINAL = frozenset({DONE, ERROR})


class TokenUsage(TypedDict):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


@dataclass(frozen=True, slots=True)
class Part:
    """A piece of an answer before it has its number."""

    kind: str
    data: dict[str, Any]

    @classmethod
    def text(cls, content: str) -> "Part":
        return cls(DELTA, {"content": content})

    @classmethod
    def reasoning(cls, content: str) -> "Part":
        return cls(REASONING, {"content": content})

    @property
    def is_terminal(self) -> bool:
        return self.kind in TERMINAL


@dataclass(frozen=True, slots=True)
class Event:
    id: int | None  # None for an event outside the numbered log (a rendered block)
    kind: str
    data: dict[str, Any]

    @property
    def is_terminal(self) -> bool:
        return self.kind in TERMINAL


@dataclass(frozen=True, slots=True)
class Ending:
    """How an answer ended: a failure, or a finish reason and what it cost."""

    failure: Failure | None
    finish_reason: str
    usage: TokenUsage | None
    cached: bool

    def event(self, event_id: int, message_id: str | None) -> Event:
        """Return the terminal event; `message_id` is None for a stateless answer."""
        if self.failure:
            return Event(
                event_id, ERROR, {"code": self.failure.code, "message": self.failure.message}
            )
        data = {
            "finish_reason": self.finish_reason,
            "message": message_id,
            "usage": usage(self.usage["prompt_tokens"], self.usage["completion_tokens"])
            if self.usage
            else None,
            "cached": self.cached,
        }
        return Event(event_id, DONE, data)

    def part(self, message_id: str | None) -> Part:
        """Return the terminal event before it has its number."""
        event = self.event(0, message_id)
        return Part(event.kind, event.data)


def usage(prompt_tokens: int, completion_tokens: int) -> TokenUsage:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
