"""
The model provider: the only module that knows the OpenAI SDK.

`stream_chat(request)` sends one Chat Completions request and yields the answer's text
deltas, then a `Finish`. Every SDK failure becomes a `ProviderError` with one of our
own codes and a message a user can read. The upstream HTTP request is closed on every
exit path, cancellation included (`async with stream`).
"""

import asyncio
import logging
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx2
import openai
from django.conf import settings

from chat.demo import DEMO_MODEL, DemoTransport

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Finish:
    reason: str
    usage: dict[str, int] | None


class ProviderError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# Keyed by event loop: an SDK client and its connection pool belong to one loop.
_clients: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[Any, ...], openai.AsyncOpenAI]
] = weakref.WeakKeyDictionary()


def get_client(model: str) -> openai.AsyncOpenAI:
    """Return this event loop's SDK client for the endpoint that serves `model`."""
    endpoint = settings.CHAT_MODEL_ENDPOINTS.get(model, {})
    key = (
        model == DEMO_MODEL,
        endpoint.get("base_url") or settings.OPENAI_BASE_URL,
        endpoint.get("api_key") or settings.OPENAI_API_KEY,
        settings.CHAT_UPSTREAM_READ_TIMEOUT,
        settings.CHAT_UPSTREAM_CONNECT_TIMEOUT,
        settings.CHAT_UPSTREAM_MAX_RETRIES,
    )
    per_loop = _clients.setdefault(asyncio.get_running_loop(), {})
    if key not in per_loop:
        per_loop[key] = _make_client(*key[:3])
    return per_loop[key]


def _make_client(demo: bool, base_url: str, api_key: str) -> openai.AsyncOpenAI:
    timeout = httpx2.Timeout(
        settings.CHAT_UPSTREAM_READ_TIMEOUT, connect=settings.CHAT_UPSTREAM_CONNECT_TIMEOUT
    )
    if demo:
        return openai.AsyncOpenAI(
            api_key="offline-demo",
            base_url="http://demo.invalid/v1",
            max_retries=0,
            timeout=timeout,
            http_client=openai.DefaultAsyncHttpx2Client(transport=DemoTransport()),
        )
    return openai.AsyncOpenAI(
        # A local OpenAI-compatible server (Ollama, vLLM ...) may need no key, but the
        # SDK insists on one.
        api_key=api_key or "not-needed",
        base_url=base_url or None,
        max_retries=settings.CHAT_UPSTREAM_MAX_RETRIES,
        timeout=timeout,
    )


async def stream_chat(request: dict[str, Any]) -> AsyncIterator[str | Finish]:
    """Yield the answer's text deltas for a Chat Completions request, then a Finish."""
    reason = ""
    usage = None
    try:
        stream = await get_client(request["model"]).chat.completions.create(
            **request, stream=True, stream_options={"include_usage": True}
        )
        async with stream:
            async for chunk in stream:
                if chunk.usage:
                    usage = {
                        "prompt_tokens": chunk.usage.prompt_tokens,
                        "completion_tokens": chunk.usage.completion_tokens,
                        "total_tokens": chunk.usage.total_tokens,
                    }
                if not chunk.choices:
                    continue
                choice = chunk.choices[0]
                if choice.delta.content:
                    yield clean_text(choice.delta.content)
                if choice.finish_reason:
                    reason = choice.finish_reason
    except openai.APIError as exc:
        raise _provider_error(exc) from exc
    except ValueError as exc:
        # The SDK lets a stream frame that is not JSON escape as a plain ValueError.
        logger.warning("upstream sent unreadable data: %s", exc)
        raise ProviderError(
            "upstream_malformed", "The model sent a reply that could not be read."
        ) from exc
    if not reason:
        raise ProviderError(
            "upstream_incomplete", "The model's answer ended before it was finished."
        )
    yield Finish(reason, usage)


async def complete(request: dict[str, Any]) -> str:
    """Return the whole text of a short, non-streamed Chat Completions answer."""
    try:
        completion = await get_client(request["model"]).chat.completions.create(**request)
    except openai.APIError as exc:
        raise _provider_error(exc) from exc
    return clean_text(completion.choices[0].message.content or "") if completion.choices else ""


def clean_text(text: str) -> str:
    """Drop what no database or browser should get from a model: NULs, lone surrogates."""
    if text.isascii() and "\x00" not in text:
        return text
    return text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")


def _provider_error(exc: openai.APIError) -> ProviderError:
    logger.warning(
        "upstream error %s: %s (request id %s)",
        type(exc).__name__,
        getattr(exc, "status_code", "-"),
        getattr(exc, "request_id", None) or "-",
    )
    if isinstance(exc, openai.APITimeoutError):
        return ProviderError("upstream_timeout", "The model took too long to answer.")
    if isinstance(exc, openai.APIConnectionError):
        return ProviderError(
            "upstream_unreachable", "The connection to the model failed or was cut."
        )
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return ProviderError(
            "upstream_auth",
            "The model provider refused our credentials. Check OPENAI_API_KEY.",
        )
    if isinstance(exc, openai.RateLimitError):
        return ProviderError(
            "upstream_rate_limited", "The model provider is rate-limiting us. Try again shortly."
        )
    if isinstance(exc, openai.NotFoundError):
        return ProviderError("upstream_not_found", "The model provider does not know this model.")
    if isinstance(exc, openai.APIStatusError) and exc.status_code >= 500:
        return ProviderError(
            "upstream_unavailable", "The model provider had an internal error. Try again."
        )
    if isinstance(exc, openai.APIStatusError):
        return ProviderError("upstream_rejected", "The model provider rejected the request.")
    return ProviderError("upstream_error", "The model reported an error while answering.")
