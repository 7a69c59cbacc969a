"""
The offline demo model: an httpx2 transport that answers like OpenAI's API.

It is handed to the real AsyncOpenAI client, so the SDK's request building, SSE parser
and chunk models run exactly as they do against a real model; only the network is
replaced. The answer is deterministic and says what it is.
"""

import asyncio
import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx2
from django.conf import settings

from chat.context import content_text
from chat.turns import CONTINUE_PROMPT

DEMO_MODEL = "demo"
TOKEN = re.compile(r"\s*\S+|\s+")
# Arithmetic in a question: digits joined by operators, as people write them.
ARITHMETIC = re.compile(r"[-(]*\d[\d.,\s]*(?:[-+*/\u00d7\u00f7^%][\s(]*\d[\d.,\s)]*)+")
TIME_ZONE = re.compile(r"\b[A-Z][a-z]+/[A-Z][A-Za-z_]+\b")
# Asked for a "long" answer, the demo stops at this many tokens, as a real model would at
# its length limit, so Continue can be tried offline.
LENGTH_LIMIT = 120
LONG_TAIL = (
    "\n\nYou asked for a long answer, so here is more. A real model stops when it reaches "
    "the length limit of its answer, often in the middle of a sentence. The page then "
    "says the answer was cut off and offers **Continue**: the model is asked to go on from "
    "exactly where it stopped, and what it writes is added to the same answer, streamed "
    "like the rest. Stopping an answer yourself offers Continue too. This sentence is "
    "the end of the demo's long answer.\n"
)
# How chat/attachment_prompt.py writes attachments into a message, as a model reads them.
ATTACHED = re.compile(
    r"^\[(?:Attached image|Image not shown): (?P<image>.+) \((?P<size>\d+\u00d7\d+)\)(?:;.*)?\]$"
    r"|^\[Attached (?P<kind>text file|PDF): (?P<name>.+)\]\n"
    r"(?P<fence>`{3,})\n(?P<body>.*?)\n(?P=fence)$",
    re.MULTILINE | re.DOTALL,
)
FIRST_WORDS = 8


def demo_answer(messages: list[dict[str, Any]]) -> str:
    """Return the demo model's deterministic answer to a conversation."""
    question = _question(messages)
    attached = _attached(messages)
    quoted = "\n".join(f"> {line}" for line in question.splitlines()) or "> (nothing)"
    turns = sum(1 for m in messages if m.get("role") == "user")
    return (
        "This is the **offline demo model**: no real language model is configured, so "
        "I can only reflect what you wrote. You said:\n\n"
        f"{quoted}\n\n"
        f"That is {len(question.split())} words, in turn {turns} of this conversation.\n\n"
        + (f"You attached: {attached}.\n\n" if attached else "")
        + "To talk to a real model, set `OPENAI_API_KEY` (OpenAI) or `OPENAI_BASE_URL` "
        "(any OpenAI-compatible server such as Ollama or vLLM) and restart:\n\n"
        "```bash\nexport OPENAI_API_KEY=sk-...\nmake run\n```\n"
    )


def demo_deltas(body: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    """Return the deltas of the demo model's answer to a request, and its finish reason.

    It thinks aloud when the question says "think", calls a tool it is offered when
    asked the time or a sum, and answers from a tool's result when it has one.
    """
    messages = body.get("messages", [])
    offered = {tool["function"]["name"] for tool in body.get("tools") or []}
    if messages and messages[-1].get("role") == "tool":
        return _tokens("content", _from_tool_results(messages)), "stop"
    if _continuing(messages):
        return _tokens("content", _rest(messages)), "stop"
    question = _question(messages)
    call = _tool_call(question, offered)
    if call:
        return _call_deltas(*call), "tool_calls"
    thinking = []
    if "think" in question.lower():
        thinking = _tokens("reasoning", _thoughts(question))
    answer = _tokens("content", _full_answer(messages))
    if _asks_long(messages):
        return thinking + answer[:LENGTH_LIMIT], "length"
    return thinking + answer, "stop"


def _asks_long(messages: list[dict[str, Any]]) -> bool:
    return "long" in _question(messages).lower().split()


def _full_answer(messages: list[dict[str, Any]]) -> str:
    """The demo's answer; asked for something long, a longer one (cut off when first sent)."""
    answer = demo_answer(messages)
    return answer + LONG_TAIL if _asks_long(messages) else answer


def _continuing(messages: list[dict[str, Any]]) -> bool:
    return (
        len(messages) >= 2
        and messages[-1].get("content") == CONTINUE_PROMPT
        and messages[-2].get("role") == "assistant"
    )


def _rest(messages: list[dict[str, Any]]) -> str:
    """Go on with the answer that was cut off: what is left of the one it began."""
    written = str(messages[-2].get("content") or "")
    full = _full_answer(messages[:-2])
    if full.startswith(written):
        return full[len(written) :] or " (That was all.)"
    return " (The offline demo model cannot go on from here: it only knows its own answers.)"


def _question(messages: list[dict[str, Any]]) -> str:
    """The last user message's own words, without what is attached to it."""
    text = _last_user_text(messages)
    first = ATTACHED.search(text)
    return (text[: first.start()] if first else text).strip()


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    users = [m for m in messages if m.get("role") == "user"]
    return content_text(users[-1].get("content")) if users else ""


def _attached(messages: list[dict[str, Any]]) -> str:
    """Say what the last user message attaches: an image's size, a file's first words."""
    said = []
    for match in ATTACHED.finditer(_last_user_text(messages)):
        if match["image"]:
            said.append(f"{match['image']} (image, {match['size']})")
        else:
            words = match["body"].split()
            start = " ".join(words[:FIRST_WORDS]) + ("…" if len(words) > FIRST_WORDS else "")
            kind = "text" if match["kind"] == "text file" else "PDF"
            said.append(f"{match['name']} ({kind}: “{start}”)")
    return "; ".join(said)


def _tokens(field: str, text: str) -> list[dict[str, Any]]:
    return [{field: token} for token in split_tokens(text)]


def _thoughts(question: str) -> str:
    return (
        f"The user asks me to think about: {question[:200]}. I am the offline demo model, "
        "so my thinking is a demonstration too: a reasoning model streams its thoughts "
        "like these before its answer, and the page shows them apart from it."
    )


def _tool_call(question: str, offered: set[str]) -> tuple[str, dict[str, Any]] | None:
    lowered = question.lower()
    if "current_time" in offered and ("what time" in lowered or "the time" in lowered):
        zone = TIME_ZONE.search(question)
        return "current_time", {"timezone": zone.group() if zone else "UTC"}
    expression = ARITHMETIC.search(question)
    if "calculator" in offered and expression:
        return "calculator", {"expression": expression.group().strip().replace(",", "")}
    return None


def _call_deltas(name: str, arguments: dict[str, Any]) -> list[dict[str, Any]]:
    """A tool call as a model streams one: its id and name, then its arguments in pieces."""
    text = json.dumps(arguments)
    call_id = f"call_demo_{uuid.uuid4().hex[:8]}"
    head = {"index": 0, "id": call_id, "type": "function"}
    first = {**head, "function": {"name": name, "arguments": ""}}
    pieces = [text[i : i + 8] for i in range(0, len(text), 8)]
    return [{"tool_calls": [first]}] + [
        {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]} for piece in pieces
    ]


def _from_tool_results(messages: list[dict[str, Any]]) -> str:
    results = []
    for message in reversed(messages):
        if message.get("role") != "tool":
            break
        results.append(str(message.get("content")))
    said = "\n".join(f"- `{result}`" for result in reversed(results))
    return (
        "I asked my tools, and they answered:\n\n"
        f"{said}\n\n"
        "(The offline demo model only reads the result back; a real model would use it.)"
    )


def split_tokens(text: str) -> list[str]:
    """Split text into word-sized pieces, the way a tokenizer's output arrives."""
    return TOKEN.findall(text)


class DemoTransport(httpx2.AsyncBaseTransport):
    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        body = json.loads(await request.aread())
        model = body.get("model", "demo")
        if not body.get("stream"):
            return httpx2.Response(
                200, json=_completion(model, demo_answer(body["messages"]), body)
            )
        deltas, finish_reason = demo_deltas(body)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return httpx2.Response(
            200,
            headers={"content-type": "text/event-stream"},
            stream=_ChunkStream(
                model, deltas, finish_reason, _usage(body, len(deltas)), include_usage
            ),
        )


class _ChunkStream(httpx2.AsyncByteStream):
    def __init__(
        self,
        model: str,
        deltas: list[dict[str, Any]],
        finish_reason: str,
        usage: dict[str, int],
        include_usage: bool,
    ) -> None:
        self.model = model
        self.deltas = deltas
        self.finish_reason = finish_reason
        self.usage = usage
        self.include_usage = include_usage
        self.id = f"chatcmpl-demo-{uuid.uuid4().hex[:12]}"

    async def __aiter__(self) -> AsyncIterator[bytes]:
        delay = settings.CHAT_DEMO_TOKEN_DELAY
        yield self._frame([{"index": 0, "delta": {"role": "assistant", "content": ""}}])
        for delta in self.deltas:
            await asyncio.sleep(delay)
            yield self._frame([{"index": 0, "delta": delta, "finish_reason": None}])
        yield self._frame([{"index": 0, "delta": {}, "finish_reason": self.finish_reason}])
        if self.include_usage:
            yield self._frame([], usage=self.usage)
        yield b"data: [DONE]\n\n"

    def _frame(self, choices: list[dict[str, Any]], **extra: Any) -> bytes:
        chunk = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": self.model,
            "choices": choices,
            **extra,
        }
        return b"data: " + json.dumps(chunk, ensure_ascii=False).encode() + b"\n\n"


def _usage(body: dict[str, Any], completion: int) -> dict[str, int]:
    messages = body.get("messages", [])
    prompt = sum(len(split_tokens(content_text(m.get("content")))) for m in messages)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _completion(model: str, answer: str, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-demo-{uuid.uuid4().hex[:12]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer},
                "finish_reason": "stop",
            }
        ],
        "usage": _usage(body, len(split_tokens(answer))),
    }
