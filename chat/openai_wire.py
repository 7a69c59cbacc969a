"""
OpenAI's Chat Completions wire format, for the OpenAI-compatible endpoint (/v1).

Pure functions from an answer's events (chat/events.py) to OpenAI's own objects: a
stream of `chat.completion.chunk` frames ended by `data: [DONE]`, or one
`chat.completion`. Reasoning goes out as `delta.reasoning` (as vLLM and OpenRouter send
it; the SDKs keep fields they do not know). The tool calls the model asked of the
client come back as OpenAI sends them; the site's own tool events have no place here.
"""

import time
import uuid
from collections.abc import Iterable
from typing import Any

from chat.events import CLIENT_TOOL_CALLS, DELTA, DONE, ERROR, REASONING, Event
from chat.sse import PING, data_frame

# The HTTP status of a failed answer that was not streamed.
ERROR_STATUS = {
    "upstream_rate_limited": 429,
    "upstream_not_found": 404,
    "upstream_rejected": 400,
    "upstream_timeout": 504,
    "timeout": 504,
    "internal": 500,
}


def error_body(message: str, code: str, kind: str = "invalid_request_error") -> dict[str, Any]:
    """OpenAI's error object: the SDKs read its message, type and code."""
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def error_status(code: str) -> int:
    return ERROR_STATUS.get(code, 502 if code.startswith("upstream_") else 500)


class Answer:
    """One answer's identity on the wire: its id, its time, its model."""

    def __init__(self, model: str) -> None:
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.model = model

    def envelope(self, kind: str) -> dict[str, Any]:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model}


class ChunkStream:
    """Encode an answer's events as `chat.completion.chunk` frames, a batch to a write."""

    def __init__(self, model: str, *, include_usage: bool) -> None:
        self.answer = Answer(model)
        self.include_usage = include_usage
        self.started = False

    def encode(self, events: Iterable[Event]) -> bytes:
        """Encode a batch of events; no events is a heartbeat comment."""
        frames = [data_frame(item) for event in events for item in self._items(event)]
        return b"".join(frames) or PING

    def _items(self, event: Event) -> list[Any]:
        if event.kind == ERROR:
            return [error_body(event.data["message"], event.data["code"], "server_error")]
        items: list[Any] = [] if self.started else [self._chunk({"role": "assistant"})]
        self.started = True
        if event.kind == DELTA:
            items.append(self._chunk({"content": event.data["content"]}))
        elif event.kind == REASONING:
            items.append(self._chunk({"reasoning": event.data["content"]}))
        elif event.kind == CLIENT_TOOL_CALLS:
            items.append(self._chunk({"tool_calls": tool_call_deltas(event.data["calls"])}))
        elif event.kind == DONE:
            items.append(self._chunk({}, finish_reason(event.data)))
            if self.include_usage:
                items.append({**self._usage_chunk(), "usage": event.data["usage"]})
            items.append("[DONE]")
        return items

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        chunk = {**self.answer.envelope("chat.completion.chunk"), "choices": [choice]}
        if self.include_usage:
            chunk["usage"] = None
        return chunk

    def _usage_chunk(self) -> dict[str, Any]:
        return {**self.answer.envelope("chat.completion.chunk"), "choices": []}


def completion(model: str, events: list[Event]) -> dict[str, Any]:
    """Return a finished answer as one `chat.completion` (its last event is `done`)."""
    done = events[-1]
    text = "".join(e.data["content"] for e in events if e.kind == DELTA)
    calls = [call for e in events if e.kind == CLIENT_TOOL_CALLS for call in e.data["calls"]]
    # OpenAI's content is null for an answer that only calls tools.
    message: dict[str, Any] = {
        "role": "assistant",
        "content": None if calls and not text else text,
        "refusal": None,
    }
    reasoning = "".join(e.data["content"] for e in events if e.kind == REASONING)
    if reasoning:
        message["reasoning"] = reasoning
    if calls:
        message["tool_calls"] = [
            {key: value for key, value in delta.items() if key != "index"}
            for delta in tool_call_deltas(calls)
        ]
    choice = {
        "index": 0,
        "message": message,
        "logprobs": None,
        "finish_reason": finish_reason(done.data),
    }
    return {
        **Answer(model).envelope("chat.completion"),
        "choices": [choice],
        "usage": done.data["usage"],
    }


def tool_call_deltas(calls: list[dict[str, str]]) -> list[dict[str, Any]]:
    return [
        {
            "index": index,
            "id": call["id"],
            "type": "function",
            "function": {"name": call["name"], "arguments": call["arguments"]},
        }
        for index, call in enumerate(calls)
    ]


def finish_reason(done: dict[str, Any]) -> str:
    # A client that left sees nothing; "cancelled" is not a reason OpenAI gives.
    return "stop" if done["finish_reason"] == "cancelled" else str(done["finish_reason"])
