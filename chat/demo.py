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

DEMO_MODEL = "demo"
TOKEN = re.compile(r"\s*\S+|\s+")


def demo_answer(messages: list[dict[str, Any]]) -> str:
    """Return the demo model's deterministic answer to a conversation."""
    question = next(
        (m["content"] for m in reversed(messages) if m.get("role") == "user"), ""
    ).strip()
    quoted = "\n".join(f"> {line}" for line in question.splitlines()) or "> (nothing)"
    turns = sum(1 for m in messages if m.get("role") == "user")
    return (
        "This is the **offline demo model**: no real language model is configured, so "
        "I can only reflect what you wrote. You said:\n\n"
        f"{quoted}\n\n"
        f"That is {len(question.split())} words, in turn {turns} of this conversation.\n\n"
        "To talk to a real model, set `OPENAI_API_KEY` (OpenAI) or `OPENAI_BASE_URL` "
        "(any OpenAI-compatible server such as Ollama or vLLM) and restart:\n\n"
        "```bash\nexport OPENAI_API_KEY=sk-...\nmake run\n```\n"
    )


def split_tokens(text: str) -> list[str]:
    """Split text into word-sized pieces, the way a tokenizer's output arrives."""
    return TOKEN.findall(text)


class DemoTransport(httpx2.AsyncBaseTransport):
    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        body = json.loads(await request.aread())
        answer = demo_answer(body.get("messages", []))
        model = body.get("model", "demo")
        if not body.get("stream"):
            return httpx2.Response(200, json=_completion(model, answer, body))
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return httpx2.Response(
            200,
            headers={"content-type": "text/event-stream"},
            stream=_ChunkStream(model, split_tokens(answer), _usage(body, answer), include_usage),
        )


class _ChunkStream(httpx2.AsyncByteStream):
    def __init__(
        self, model: str, tokens: list[str], usage: dict[str, int], include_usage: bool
    ) -> None:
        self.model = model
        self.tokens = tokens
        self.usage = usage
        self.include_usage = include_usage
        self.id = f"chatcmpl-demo-{uuid.uuid4().hex[:12]}"

    async def __aiter__(self) -> AsyncIterator[bytes]:
        delay = settings.CHAT_DEMO_TOKEN_DELAY
        yield self._frame([{"index": 0, "delta": {"role": "assistant", "content": ""}}])
        for token in self.tokens:
            await asyncio.sleep(delay)
            yield self._frame([{"index": 0, "delta": {"content": token}, "finish_reason": None}])
        yield self._frame([{"index": 0, "delta": {}, "finish_reason": "stop"}])
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


def _usage(body: dict[str, Any], answer: str) -> dict[str, int]:
    prompt = sum(len(split_tokens(str(m.get("content", "")))) for m in body.get("messages", []))
    completion = len(split_tokens(answer))
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
        "usage": _usage(body, answer),
    }
