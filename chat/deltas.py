"""
What the deltas of a streamed chat completion carry, joined into parts and whole calls.

A `chat.completion.chunk`'s delta may hold text (`content`), the model's thinking
(`reasoning`, as vLLM, Ollama and OpenRouter send it, or `reasoning_content`, as DeepSeek
and llama.cpp do, or `<think>…</think>` inline in the text) and fragments of tool calls
(`tool_calls[]`, joined by `index`). `DeltaReader` turns the chunks of one network read
into answer parts, and gathers the tool calls until the end; `joined()` makes the parts
of one read one part per run of a kind.
Anything of the wrong shape raises `Malformed`: model output is untrusted input.
"""

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

from chat.events import Part

THINK_TAGS = {"<think>": "</think>", "<thinking>": "</thinking>"}
# A call's arguments are cut off past this many characters: a model streaming megabytes
# of arguments costs no more memory than this, and the call ends as a tool error.
MAX_ARGUMENTS_CHARS = 100_000
MAX_CALLS = 16  # calls one round may ask for; more are dropped
MAX_NAME_CHARS = 64
CALL_ID = re.compile(r"[A-Za-z0-9_.:-]{1,100}")


class Malformed(ValueError):
    """A delta of a shape no OpenAI-compatible server sends."""


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A call the model asked for: its arguments as the JSON text it wrote."""

    id: str
    name: str
    arguments: str
    truncated: bool = False


class InlineThinking:
    """Split streamed text into reasoning and answer at `<think>` tags, cut anywhere.

    Text that might be the start of a tag is held back until the next text tells.
    """

    def __init__(self) -> None:
        self._held = ""
        self._closing: str | None = None  # the end tag awaited inside a thinking block

    def feed(self, text: str) -> list[Part]:
        text = self._held + text
        self._held = ""
        if self._closing is None and "<" not in text:
            return [Part.text(text)] if text else []
        parts: list[Part] = []
        while text:
            tags = [self._closing] if self._closing else list(THINK_TAGS)
            found = [(text.find(tag), tag) for tag in tags if tag in text]
            if found:
                at, tag = min(found)
                self._emit(parts, text[:at])
                text = text[at + len(tag) :]
                self._closing = None if self._closing else THINK_TAGS[tag]
                continue
            keep = _tag_prefix_length(text, tags)
            self._emit(parts, text[: len(text) - keep])
            self._held = text[len(text) - keep :]
            break
        return parts

    def flush(self) -> list[Part]:
        """Return the text held back, at the end of the answer."""
        parts: list[Part] = []
        self._emit(parts, self._held)
        self._held = ""
        return parts

    def _emit(self, parts: list[Part], text: str) -> None:
        if text:
            parts.append(Part.reasoning(text) if self._closing else Part.text(text))


def _tag_prefix_length(text: str, tags: list[str]) -> int:
    """Return the length of the longest end of `text` that begins one of the tags."""
    for length in range(min(len(text), max(map(len, tags)) - 1), 0, -1):
        if any(tag.startswith(text[-length:]) for tag in tags):
            return length
    return 0


class ToolCallFragments:
    """Join `delta.tool_calls` fragments into whole calls.

    Fragments of one call share its `index`; its first fragment carries its `id` and
    name. A new `id` at an index in use opens a new call (some servers reuse index 0 for
    parallel calls); a call sent whole in one fragment (Ollama) is a call like any other.
    """

    def __init__(self) -> None:
        self._calls: list[dict[str, Any]] = []
        self._by_index: dict[int, dict[str, Any]] = {}

    def feed(self, fragments: Any) -> None:
        if not isinstance(fragments, list):
            raise Malformed("tool_calls must be a list")
        for fragment in fragments:
            self._add(fragment)

    def _add(self, fragment: Any) -> None:
        if not isinstance(fragment, dict):
            raise Malformed("a tool call fragment must be an object")
        index = fragment.get("index", len(self._calls))
        call_id = fragment.get("id")
        function = fragment.get("function") or {}
        if (
            not isinstance(index, int)
            or not isinstance(call_id, str | None)
            or not isinstance(function, dict)
        ):
            raise Malformed("a tool call fragment has fields of the wrong type")
        name, arguments = function.get("name"), function.get("arguments")
        if not isinstance(name, str | None) or not isinstance(arguments, str | dict | None):
            raise Malformed("a tool call's name and arguments must be strings")
        call = self._by_index.get(index)
        if call is None or (call_id and call["id"] and call_id != call["id"]):
            if len(self._calls) == MAX_CALLS:
                return
            call = {"id": call_id, "name": "", "arguments": [], "size": 0, "truncated": False}
            self._calls.append(call)
            self._by_index[index] = call
        call["id"] = call["id"] or call_id
        if len(call["name"]) <= MAX_NAME_CHARS:
            call["name"] += name or ""
        if isinstance(arguments, dict):  # a server that sends the object, not its text
            arguments = json.dumps(arguments, ensure_ascii=False)
        if arguments and not call["truncated"]:
            call["size"] += len(arguments)
            call["truncated"] = call["size"] > MAX_ARGUMENTS_CHARS
            call["arguments"].append(arguments)

    def calls(self) -> list[ToolCall]:
        """Return the calls, each id a plain token unique in the round (made up if not)."""
        calls, seen = [], set()
        for call in self._calls:
            call_id = call["id"] if call["id"] and CALL_ID.fullmatch(call["id"]) else None
            if call_id is None or call_id in seen:
                call_id = f"call_{uuid.uuid4().hex[:24]}"
            seen.add(call_id)
            calls.append(
                ToolCall(
                    id=call_id,
                    name=clean_text(call["name"])[:MAX_NAME_CHARS],
                    arguments="".join(call["arguments"]),
                    truncated=call["truncated"],
                )
            )
        return calls


def clean_text(text: str) -> str:
    """Drop what no database or browser should get from a model: NULs, lone surrogates."""
    if text.isascii() and "\x00" not in text:
        return text
    return text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")


class DeltaReader:
    """Read the deltas of one answer: parts as they come, tool calls at the end."""

    def __init__(self) -> None:
        self.thinking = InlineThinking()
        self.tool_calls = ToolCallFragments()

    def read(self, delta: dict[str, Any]) -> list[Part]:
        """Return the parts of one delta (the caller joins those of a read, `joined()`)."""
        reasoning = delta.get("reasoning") or delta.get("reasoning_content")
        content = delta.get("content")
        if not isinstance(reasoning, str | None) or not isinstance(content, str | None):
            raise Malformed("a delta's content and reasoning must be strings")
        parts = [Part.reasoning(reasoning)] if reasoning else []
        if content:
            parts += self.thinking.feed(content)
        if delta.get("tool_calls") is not None:
            self.tool_calls.feed(delta["tool_calls"])
        return parts

    def end(self) -> list[Part]:
        return self.thinking.flush()


def joined(parts: list[Part]) -> list[Part]:
    """Join adjacent text parts, and adjacent reasoning parts, into one part each."""
    if len(parts) < 2:
        return parts
    runs: list[tuple[str, list[str]]] = []
    for part in parts:
        if runs and runs[-1][0] == part.kind:
            runs[-1][1].append(part.data["content"])
        else:
            runs.append((part.kind, [part.data["content"]]))
    return [Part(kind, {"content": "".join(texts)}) for kind, texts in runs]
