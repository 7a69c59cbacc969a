"""
The answering pipeline: from a prepared request to a stream of answer parts.

One pipeline for every answer. It looks the request up in the response cache and replays
a hit, or relays the model's answer through the provider; it bounds the whole answer by
CHAT_GENERATION_TIMEOUT; it maps every failure to the one vocabulary of chat/failures.py;
and it says which answers the cache keeps. Its consumers decide where the parts go: a
conversation's answer into its event log (chat/generation.py), a stateless answer
straight into the HTTP response (chat/completions.py).

The parts are yielded as they come; how the answer ended (finish reason, usage, or a
failure) lands in the `Answer` the consumer passes in. The consumer adds each part to it
once delivered, so the answer holds exactly what its readers were sent.
"""

import asyncio
import logging
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from chat import answer_cache, failures, provider
from chat.answer_cache import CachedAnswer
from chat.events import DELTA, Ending, Part, TokenUsage
from chat.failures import Failure
from chat.provider import Finish, ProviderError

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Prepared:
    """A request for the model, and the key its answer is cached under (None: not cached)."""

    request: dict[str, Any]
    cache_key: str | None

    @classmethod
    def of(cls, request: dict[str, Any], *, use_cache: bool) -> "Prepared":
        return cls(request, answer_cache.key_for(request) if use_cache else None)

    @property
    def model(self) -> str:
        return str(self.request["model"])


@dataclass
class Answer:
    """An answer as it is produced: its text so far, then how it ended."""

    parts: list[str] = field(default_factory=list)
    finish_reason: str = ""
    usage: TokenUsage | None = None
    failure: Failure | None = None
    cached: bool = False
    started: float = field(default_factory=time.monotonic)
    first_token: float | None = None

    def add(self, part: Part) -> None:
        if self.first_token is None:
            self.first_token = time.monotonic()
        if part.kind == DELTA:
            self.parts.append(part.data["content"])

    @property
    def text(self) -> str:
        return "".join(self.parts)

    @property
    def sizes(self) -> list[int]:
        """The length of each delta: the stored text splits back into the same events."""
        return [len(part) for part in self.parts]

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
            "prompt_tokens": self.usage["prompt_tokens"] if self.usage else None,
            "completion_tokens": self.usage["completion_tokens"] if self.usage else None,
            "cached": self.cached,
        }


async def answer_parts(prepared: Prepared, answer: Answer) -> AsyncGenerator[Part]:
    """Yield the answer's parts, from the cache or the model; its end lands in `answer`.

    Closing the iterator early (a cancel, a client gone) closes the upstream request.
    """
    cached = await answer_cache.lookup(prepared.cache_key) if prepared.cache_key else None
    if cached:
        answer.cached = True
        answer.finish_reason = cached.finish_reason
        answer.usage = cached.usage
        for text in cached.parts:
            yield Part.text(text)
        return
    deadline = asyncio.get_running_loop().time() + settings.CHAT_GENERATION_TIMEOUT
    upstream = provider.stream_chat(prepared.request)
    try:
        while True:
            # The deadline bounds each step, not the generator: its steps may run in
            # different tasks.
            async with asyncio.timeout_at(deadline):
                item = await anext(upstream)
            if isinstance(item, Finish):
                answer.finish_reason = item.reason
                answer.usage = item.usage
                continue
            yield Part.text(item)
    except StopAsyncIteration:
        pass
    except ProviderError as exc:
        answer.failure = Failure(exc.code, exc.message)
    except TimeoutError:
        answer.failure = failures.TIMEOUT
    except Exception:
        # Our bug: the answer must still end, with its text kept.
        logger.exception("answer failed")
        answer.failure = failures.INTERNAL
    finally:
        await upstream.aclose()  # closes the upstream request on every path


async def remember(prepared: Prepared, answer: Answer) -> None:
    """Keep a complete answer from the model in the cache, for the same request again."""
    if prepared.cache_key and answer.complete and not answer.cached:
        await answer_cache.store(
            prepared.cache_key, CachedAnswer(answer.parts, answer.finish_reason, answer.usage)
        )
