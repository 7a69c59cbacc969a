"""
The AI SDK's UI message stream, v1: what `useChat` (its DefaultChatTransport) and
assistant-ui read. An answer's events become the SDK's chunks, each a `data: {json}`
frame, the stream ended by `data: [DONE]`.

The SDK's text and reasoning come in blocks, each opened and closed (`text-start`, its
`text-delta`s, `text-end`), and its steps are the model's rounds: the model going on
after a tool's result is a new step. Our tools are the SDK's dynamic tools; a tool's
progress is a transient `data-progress` part, which the SDK passes to `onData` and does
not keep in the message. So the encoder keeps a little state: one per stream.

`ui_message()` gives a stored message as the SDK's UIMessage, with the parts the stream
built: what a front-end starts from after a reload.
"""

from collections.abc import Iterable
from typing import Any

from chat import sse
from chat.answer import stored_parts
from chat.events import DELTA, DONE, ERROR, PROGRESS, REASONING, TOOL_END, TOOL_START, Event
from chat.models import Generation, Message

HEADER = ("x-vercel-ai-ui-message-stream", "v1")
FINISH_REASONS = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool-calls",
    "content_filter": "content-filter",
}
_BLOCKS = {DELTA: "text", REASONING: "reasoning"}


class UIMessageStream:
    """Encode one answer's events, batch by batch, as UI message stream chunks."""

    def __init__(self, message_id: str) -> None:
        self.message_id = message_id
        self.started = False
        self.block: tuple[str, str] | None = None  # the open block: its kind and id
        self.after_tools = False  # the model's next words begin a new step

    def encode(self, events: Iterable[Event]) -> bytes:
        """Encode a batch of events; no events is a heartbeat comment."""
        frames = [sse.data_frame(chunk) for event in events for chunk in self.chunks(event)]
        return b"".join(frames) or sse.PING

    def chunks(self, event: Event) -> list[dict[str, Any] | str]:
        chunks: list[dict[str, Any] | str] = []
        if not self.started:
            self.started = True
            chunks += [{"type": "start", "messageId": self.message_id}, {"type": "start-step"}]
        data = event.data
        if event.kind in _BLOCKS:
            chunks += self._open(_BLOCKS[event.kind], event)
            assert self.block is not None
            chunks.append(
                {"type": f"{self.block[0]}-delta", "id": self.block[1], "delta": data["content"]}
            )
        elif event.kind == TOOL_START:
            chunks += self._close()
            chunks.append(
                {
                    "type": "tool-input-available",
                    "toolCallId": data["id"],
                    "toolName": data["name"],
                    "input": data["arguments"],
                    "dynamic": True,
                }
            )
        elif event.kind == PROGRESS:
            progress = {"message": data["message"], "fraction": data["fraction"]}
            chunks.append(
                {"type": "data-progress", "id": data["id"], "data": progress, "transient": True}
            )
        elif event.kind == TOOL_END:
            chunks.append(_tool_output(data))
            self.after_tools = True
        elif event.kind == DONE:
            chunks += [*self._close(), *_ending(data), "[DONE]"]
        elif event.kind == ERROR:
            chunks += [*self._close(), {"type": "error", "errorText": data["message"]}, "[DONE]"]
        return chunks

    def _open(self, kind: str, event: Event) -> list[dict[str, Any]]:
        if self.block and self.block[0] == kind:
            return []
        chunks = self._close()
        if self.after_tools:
            chunks += [{"type": "finish-step"}, {"type": "start-step"}]
            self.after_tools = False
        self.block = (kind, f"{kind}-{event.id}")
        chunks.append({"type": f"{kind}-start", "id": self.block[1]})
        return chunks

    def _close(self) -> list[dict[str, Any]]:
        if self.block is None:
            return []
        kind, block_id = self.block
        self.block = None
        return [{"type": f"{kind}-end", "id": block_id}]


def _tool_output(data: dict[str, Any]) -> dict[str, Any]:
    if "error" in data:
        return {
            "type": "tool-output-error",
            "toolCallId": data["id"],
            "errorText": data["error"]["message"],
            "dynamic": True,
        }
    return {
        "type": "tool-output-available",
        "toolCallId": data["id"],
        "output": data["result"],
        "dynamic": True,
    }


def _ending(done: dict[str, Any]) -> list[dict[str, Any]]:
    if done["finish_reason"] == "cancelled":
        return [{"type": "abort", "reason": "cancelled"}]
    reason = FINISH_REASONS.get(done["finish_reason"], "other")
    return [{"type": "finish-step"}, {"type": "finish", "finishReason": reason}]


def ui_message(message: Message) -> dict[str, Any]:
    """Return a stored message as the SDK's UIMessage (its `generation` loaded, if any)."""
    if message.role == Message.Role.USER:
        return {
            "id": str(message.pk),
            "role": "user",
            "parts": [{"type": "text", "text": message.content}],
        }
    generation: Generation | None = getattr(message, "generation", None)
    layout = generation.event_layout if generation else [len(message.content)]
    parts: list[dict[str, Any]] = []
    tools: dict[str, dict[str, Any]] = {}
    for part in stored_parts(layout, message.content, message.reasoning, message.tool_calls):
        data = part.data
        if part.kind in _BLOCKS:
            kind = _BLOCKS[part.kind]
            if parts and parts[-1]["type"] == kind:
                parts[-1]["text"] += data["content"]
            elif data["content"]:
                parts.append({"type": kind, "text": data["content"], "state": "done"})
        elif part.kind == TOOL_START:
            tools[data["id"]] = {
                "type": "dynamic-tool",
                "toolName": data["name"],
                "toolCallId": data["id"],
                "state": "input-available",
                "input": data["arguments"],
            }
            parts.append(tools[data["id"]])
        elif part.kind == TOOL_END and data["id"] in tools:
            if "error" in data:
                tools[data["id"]].update(state="output-error", errorText=data["error"]["message"])
            else:
                tools[data["id"]].update(state="output-available", output=data["result"])
    return {"id": str(message.pk), "role": "assistant", "parts": parts}
