"""
An answer as it is produced: its text, reasoning and tool calls so far, the layout of its
events, then how it ended.

The layout is how the database keeps the order of an answer's events without keeping
them twice: one entry per event, in order. A number is a `delta` of that many characters
of the message's content; `["reasoning", n]` is n characters of its reasoning;
`["tool_start", i]` and `["tool_end", i]` are the start and the end of its i-th tool
call; `["progress", data]` is a progress report, kept whole. So a stored answer splits
back into the very events that were streamed, with the same ids.
"""

import math
import time
from dataclasses import dataclass, field, replace
from typing import Any

from chat.events import (
    CLIENT_TOOL_CALLS,
    DELTA,
    PROGRESS,
    REASONING,
    TOOL_END,
    TOOL_START,
    Ending,
    Part,
    TokenUsage,
)
from chat.failures import Failure

type LayoutEntry = int | list[Any]


@dataclass
class Answer:
    parts: list[str] = field(default_factory=list)  # the text deltas
    reasoning: list[str] = field(default_factory=list)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    layout: list[LayoutEntry] = field(default_factory=list)
    finish_reason: str = ""
    usage: TokenUsage | None = None
    usage_estimated: bool = False  # a round of it reported no usage: counted here
    failure: Failure | None = None
    cached: bool = False
    started: float = field(default_factory=time.monotonic)
    first_token: float | None = None
    thinking: tuple[float, float] | None = None  # when reasoning began, and when it gave way
    asked_client: bool = False  # the model asked the client for its tools (/v1)
    asked_model: bool = True  # False: it ended before anything was asked (no cost)

    @classmethod
    def of(cls, parts: list[Part], failure: Failure | None = None) -> "Answer":
        answer = cls(failure=failure)
        for part in parts:
            answer.add(part)
        answer.thinking = answer.first_token = None  # rebuilt, not timed
        return answer

    def add(self, part: Part) -> None:
        """Count a part the answer's readers have been sent."""
        if self.first_token is None:
            self.first_token = time.monotonic()
        kind, data = part.kind, part.data
        self._time_thinking(kind)
        if kind == DELTA:
            self.parts.append(data["content"])
            self.layout.append(len(data["content"]))
        elif kind == REASONING:
            self.reasoning.append(data["content"])
            self.layout.append([REASONING, len(data["content"])])
        elif kind == TOOL_START:
            self.tool_calls.append(dict(data))
            self.layout.append([TOOL_START, len(self.tool_calls) - 1])
        elif kind == TOOL_END:
            index = self._open_call(data["id"])
            outcome: dict[str, Any] = {k: data[k] for k in ("result", "error") if k in data}
            self.tool_calls[index].update(outcome)
            self.layout.append([TOOL_END, index])
        elif kind == PROGRESS:
            self.layout.append([PROGRESS, data])
        elif kind == CLIENT_TOOL_CALLS:
            self.asked_client = True

    def _time_thinking(self, kind: str) -> None:
        now = time.monotonic()
        if kind == REASONING and self.thinking is None:
            self.thinking = (now, math.inf)
        elif kind != REASONING and self.thinking and self.thinking[1] == math.inf:
            self.thinking = (self.thinking[0], now)

    @property
    def thinking_seconds(self) -> float | None:
        """How long the model reasoned before it answered or called a tool."""
        if self.thinking is None:
            return None
        began, ended = self.thinking
        return round(min(ended, time.monotonic()) - began, 1)

    def snapshot(self) -> "Answer":
        """Return a copy that later parts do not change (for another thread to read)."""
        return replace(
            self,
            parts=list(self.parts),
            reasoning=list(self.reasoning),
            tool_calls=[dict(call) for call in self.tool_calls],
            layout=list(self.layout),
        )

    def _open_call(self, call_id: str) -> int:
        for index in range(len(self.tool_calls) - 1, -1, -1):
            call = self.tool_calls[index]
            if call["id"] == call_id and "result" not in call and "error" not in call:
                return index
        raise ValueError(f"tool_end for {call_id!r}, which has not started")

    @property
    def text(self) -> str:
        return "".join(self.parts)

    @property
    def reasoning_text(self) -> str:
        return "".join(self.reasoning)

    @property
    def events(self) -> int:
        """How many events the answer has had, its terminal event not counted."""
        return len(self.layout)

    @property
    def complete(self) -> bool:
        return self.failure is None and self.finish_reason == "stop"

    @property
    def ending(self) -> Ending:
        return Ending(self.failure, self.finish_reason, self.usage, self.cached)

    @property
    def outcome(self) -> str:
        return self.failure.code if self.failure else self.finish_reason

    def log_fields(self) -> dict[str, Any]:
        """What a log line of the answer's end carries: never its text."""
        ttft = None if self.first_token is None else self.first_token - self.started
        return {
            "outcome": self.outcome,
            "ttft_ms": None if ttft is None else round(ttft * 1000, 1),
            "duration_ms": round((time.monotonic() - self.started) * 1000, 1),
            "deltas": len(self.parts),
            "tool_calls": len(self.tool_calls),
            "prompt_tokens": self.usage["prompt_tokens"] if self.usage else None,
            "completion_tokens": self.usage["completion_tokens"] if self.usage else None,
            "cached": self.cached,
        }


def stored_parts(
    layout: list[LayoutEntry], content: str, reasoning: str, tool_calls: list[dict[str, Any]]
) -> list[Part]:
    """Return the parts an answer was streamed as, from what the database keeps."""
    parts = []
    text_at = reasoning_at = 0
    for entry in layout:
        if isinstance(entry, int):
            parts.append(Part.text(content[text_at : text_at + entry]))
            text_at += entry
            continue
        kind, value = entry
        if kind == REASONING:
            parts.append(Part.reasoning(reasoning[reasoning_at : reasoning_at + value]))
            reasoning_at += value
        elif kind == TOOL_START:
            call = tool_calls[value]
            start = {"id": call["id"], "name": call["name"], "arguments": call["arguments"]}
            parts.append(Part(TOOL_START, start))
        elif kind == TOOL_END:
            call = tool_calls[value]
            end: dict[str, Any] = {
                key: call[key] for key in ("id", "name", "result", "error") if key in call
            }
            parts.append(Part(TOOL_END, end))
        elif kind == PROGRESS:
            parts.append(Part(PROGRESS, value))
    return parts


def text_length(layout: list[LayoutEntry], events: int) -> int:
    """Return how many characters of the content the first `events` events hold."""
    return sum(entry for entry in layout[:events] if isinstance(entry, int))
