"""
The answering pipeline: from a prepared request to a stream of answer parts.

One pipeline for every answer. It looks the request up in the response cache and replays
a hit, or relays the model's answer through the provider; when the model asks for tools,
it runs them (chat/tools/) and asks the model again with their results, until the model
answers in text or CHAT_MAX_TOOL_STEPS runs out; it bounds the whole answer by
CHAT_GENERATION_TIMEOUT; it maps every failure to the one vocabulary of chat/failures.py;
and it says which answers the cache keeps. Its consumers decide where the parts go: a
conversation's answer into its event log (chat/generation.py), a stateless answer
straight into the HTTP response (chat/completions.py).

The parts are yielded as they come; how the answer ended (finish reason, usage, or a
failure) lands in the `Answer` the consumer passes in. The consumer adds each part to it
once delivered, so the answer holds exactly what its readers were sent.
"""

import asyncio
import json
import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from chat import answer_cache, context, failures, provider, turns
from chat.answer import Answer, stored_parts
from chat.answer_cache import CachedAnswer
from chat.deadline import Deadline
from chat.deltas import ToolCall
from chat.events import CLIENT_TOOL_CALLS, DELTA, TOOL_END, TOOL_START, Part
from chat.events import usage as token_usage
from chat.failures import Failure
from chat.provider import TOOLS_REFUSED, Finish, ProviderError
from chat.tools import Tool, runner

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Prepared:
    """A request for the model, the key its answer is cached under (None: not cached),
    and the tools it may call, run as `user`."""

    request: dict[str, Any]
    cache_key: str | None
    tools: tuple[Tool, ...] = ()
    user: Any = None

    @classmethod
    def of(
        cls,
        request: dict[str, Any],
        *,
        use_cache: bool,
        tools: tuple[Tool, ...] = (),
        user: Any = None,
    ) -> "Prepared":
        if tools:
            request = {**request, "tools": [tool.spec for tool in tools]}
        return cls(request, answer_cache.key_for(request) if use_cache else None, tools, user)

    @property
    def model(self) -> str:
        return str(self.request["model"])


@dataclass
class _Round:
    """One request upstream, and what it gave: its text, its end (with any tool calls)."""

    request: dict[str, Any]
    text: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    finish: Finish | None = None


async def answer_parts(prepared: Prepared, answer: Answer) -> AsyncGenerator[Part]:
    """Yield the answer's parts, from the cache or the model; its end lands in `answer`.

    With tools, the model is asked again with their results until it answers in text,
    at most CHAT_MAX_TOOL_STEPS times. Closing the iterator early (a cancel, a client
    gone) closes the upstream request, or stops the tool that runs.
    """
    cached = await answer_cache.lookup(prepared.cache_key) if prepared.cache_key else None
    if cached:
        answer.cached = True
        answer.finish_reason = cached.finish_reason
        answer.usage = cached.usage
        for part in cached.answer_parts():
            yield part
        return
    deadline = Deadline(asyncio.get_running_loop().time() + settings.CHAT_GENERATION_TIMEOUT)
    messages = list(prepared.request["messages"])
    this_round = None
    try:
        for step in range(settings.CHAT_MAX_TOOL_STEPS + 1):
            this_round = _Round({**prepared.request, "messages": messages})
            async for part in _model_round(this_round, deadline):
                yield part
            finished, this_round = this_round, None
            _count(answer, finished)
            assert finished.finish is not None
            calls = finished.finish.tool_calls if prepared.tools else []
            if not calls:
                if finished.finish.tool_calls and "tools" in finished.request:
                    yield _client_tool_calls(finished.finish.tool_calls)
                answer.finish_reason = finished.finish.reason
                return
            if step == settings.CHAT_MAX_TOOL_STEPS:
                answer.failure = failures.TOO_MANY_TOOL_STEPS
                return
            records = []
            for call in calls:
                async for part in _tool_parts(call, prepared, deadline):
                    yield part
                    if part.kind == TOOL_START:
                        arguments = part.data["arguments"]  # as the runner parsed them
                    elif part.kind == TOOL_END:
                        records.append({**part.data, "arguments": arguments})
            messages += turns.round_messages("".join(finished.text), records)
    except ProviderError as exc:
        answer.failure = Failure(exc.code, exc.message)
    except TimeoutError:
        answer.failure = failures.TIMEOUT
    except Exception:
        # Our bug: the answer must still end, with its text kept.
        logger.exception("answer failed")
        answer.failure = failures.INTERNAL
    finally:
        deadline.close()
        if this_round is not None:  # cut short: what it cost is counted all the same
            _count(answer, this_round)


async def _model_round(this_round: _Round, deadline: Deadline) -> AsyncGenerator[Part]:
    """Yield one upstream answer's parts; its end lands in `this_round`.

    An upstream that refuses the tools is asked again without them, once.
    """
    request = this_round.request
    upstream = provider.stream_chat(request)
    try:
        while True:
            # The deadline bounds each step, not the generator: its steps may run in
            # different tasks.
            item = await deadline.next(upstream)
            if isinstance(item, Finish):
                this_round.finish = item
                continue
            if item.kind == DELTA:
                this_round.text.append(item.data["content"])
            else:
                this_round.reasoning.append(item.data["content"])
            yield item
    except StopAsyncIteration:
        pass
    except ProviderError as exc:
        if exc.code != TOOLS_REFUSED or "tools" not in request:
            raise
        logger.warning(
            "model %s refused tools (%s); asking without them", request["model"], exc.detail
        )
        without = {key: value for key, value in request.items() if key != "tools"}
        this_round.request = {**without, "messages": turns.flattened(request["messages"])}
        async for part in _model_round(this_round, deadline):
            yield part
    finally:
        await upstream.aclose()  # closes the upstream request on every path


async def _tool_parts(
    call: ToolCall, prepared: Prepared, deadline: Deadline
) -> AsyncGenerator[Part]:
    calls = runner.run(call, prepared.tools, prepared.user)
    try:
        while True:
            yield await deadline.next(calls)
    except StopAsyncIteration:
        pass
    finally:
        await calls.aclose()  # stops the tool


def _client_tool_calls(calls: list[ToolCall]) -> Part:
    """The calls the model asked of a client that sent its own tools, as it wrote them."""
    asked = [{"id": call.id, "name": call.name, "arguments": call.arguments} for call in calls]
    return Part(CLIENT_TOOL_CALLS, {"calls": asked})


def _count(answer: Answer, this_round: _Round) -> None:
    """Add what a round cost to the answer's usage: as reported, or else estimated."""
    used = this_round.finish.usage if this_round.finish else None
    if used is None:
        request = this_round.request
        model = request["model"]
        prompt, _ = context.message_tokens(request["messages"], model)
        offered, _ = context.count_tokens(json.dumps(request.get("tools", "")), model)
        calls = this_round.finish.tool_calls if this_round.finish else []
        said = [*this_round.reasoning, *this_round.text, *(c.name + c.arguments for c in calls)]
        completion, _ = context.count_tokens("".join(said), model)
        used = token_usage(prompt + offered, completion)
        answer.usage_estimated = True
    if answer.usage is not None:
        used = token_usage(
            answer.usage["prompt_tokens"] + used["prompt_tokens"],
            answer.usage["completion_tokens"] + used["completion_tokens"],
        )
    answer.usage = used


async def remember(prepared: Prepared, answer: Answer) -> None:
    """Keep a complete answer from the model in the cache, for the same request again.

    An answer that called tools is not kept: their results (the time, the user's own
    messages) do not hold for the next asker.
    """
    if (
        prepared.cache_key
        and answer.complete
        and not (answer.cached or answer.tool_calls or answer.asked_client)
    ):
        parts = stored_parts(answer.layout, answer.text, answer.reasoning_text, [])
        kept = [[part.kind, part.data["content"]] for part in parts]
        await answer_cache.store(
            prepared.cache_key, CachedAnswer(kept, answer.finish_reason, answer.usage)
        )
