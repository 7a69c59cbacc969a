"""
The model provider: the only module that knows the OpenAI SDK.

`stream_chat(request)` sends one Chat Completions request and yields the answer's text
deltas, then a `Finish`. Every SDK failure becomes a `ProviderError` with one of our
own codes and a message a user can read. The upstream HTTP request is closed on every
exit path, cancellation included (`async with` on the SDK's streamed response).
"""

import asyncio
import contextlib
import logging
import re
import ssl
import urllib.request
import weakref
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx2
import openai
from django.conf import settings

from chat import network, wirejson
from chat.deltas import DeltaReader, InlineThinking, Malformed, ToolCall, clean_text, joined
from chat.demo import DEMO_MODEL, DemoTransport
from chat.events import DELTA, Part, TokenUsage

logger = logging.getLogger(__name__)

# An upstream that refuses a request because it offers tools: Ollama's "... does not
# support tools", vLLM's "tool choice requires --enable-auto-tool-choice", llama.cpp's
# "tools param requires --jinja flag".
TOOLS_REFUSED = "upstream_tools_unsupported"
TOOLS_REFUSAL = re.compile(
    r"(not support|requires|enable)\S*[^.]*\btools?\b|\btools?\b[^.]*(not support|requires|enable)",
    re.IGNORECASE,
)
DRAIN_TIMEOUT = 0.1  # seconds to wait for the end of a body after its [DONE]
# What the SDK turns into APIConnectionError while it reads a stream (openai/_httpx2.py:
# anyio's EndOfStream stands for TLS failures httpx2 does not map yet).
TRANSPORT_ERRORS = (httpx2.RequestError, ssl.SSLError, anyio.EndOfStream)


@dataclass(frozen=True, slots=True)
class Finish:
    reason: str
    usage: TokenUsage | None
    tool_calls: list[ToolCall] = field(default_factory=list)


class ProviderError(Exception):
    def __init__(self, code: str, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.detail = detail  # the upstream's own words, for the log


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
        settings.CHAT_UPSTREAM_MAX_CONNECTIONS,
    )
    per_loop = _clients.setdefault(asyncio.get_running_loop(), {})
    if key not in per_loop:
        per_loop[key] = _make_client(*key[:3])
    return per_loop[key]


async def close_clients() -> None:
    """Close this event loop's SDK clients and their connections to the model."""
    for client in _clients.pop(asyncio.get_running_loop(), {}).values():
        await client.close()


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
        http_client=_http_client(),
    )


def _http_client() -> httpx2.AsyncClient:
    """The SDK's HTTP client, its connections on chat/network.py's backend; through a
    proxy named by the environment (HTTPS_PROXY ...), httpx's own, which honours it."""
    if _proxy_named():
        return openai.DefaultAsyncHttpx2Client(limits=_upstream_limits())
    return openai.DefaultAsyncHttpx2Client(transport=network.Transport(_upstream_limits()))


def _proxy_named() -> bool:
    """Tell whether the environment names a proxy httpx would use (its reading of it)."""
    named = urllib.request.getproxies()
    proxies = any(named.get(scheme) for scheme in ("http", "https", "all"))
    return proxies and named.get("no", "").strip() != "*"


def _upstream_limits() -> httpx2.Limits:
    # Each answer holds a connection for its whole life: the SDK's default of 1,000 would
    # make the 1,001st concurrent answer of a process wait for one until it timed out.
    # Kept alive for reuse: the usual concurrency.
    return httpx2.Limits(
        max_connections=settings.CHAT_UPSTREAM_MAX_CONNECTIONS, max_keepalive_connections=200
    )


async def stream_chat(request: dict[str, Any]) -> AsyncGenerator[Part | Finish]:
    """Yield the answer's parts (text, reasoning) for a Chat Completions request, then a
    Finish with the tool calls the model asked for.

    The deltas that arrive in one read from the network are yielded joined, a part per
    run of one kind: a model streaming faster than we read costs one event per read, not
    one per token, and a lone token still goes on at once.
    """
    reason = ""
    usage = None
    reader = DeltaReader()
    client = get_client(request["model"])
    try:
        # The SDK sends the request (auth, retries, timeouts, status errors); the body is
        # read here: the SDK's typed object per chunk cost more than the rest of the relay.
        body = {**request, "stream": True, "stream_options": {"include_usage": True}}
        async with client.chat.completions.with_streaming_response.create(
            **_as_sent(body)
        ) as response:
            async for chunks in _chunks(response.http_response):
                parts: list[Part] = []
                try:
                    for chunk in chunks:
                        delta, finish_reason, chunk_usage = _fields(chunk)
                        if chunk_usage is not None:
                            usage = chunk_usage
                        if delta:
                            parts += _read(reader, delta, chunk)
                        if finish_reason:
                            reason = finish_reason
                except ProviderError:
                    # What came before the unreadable chunk, and any text held back.
                    for part in cleaned(parts + reader.end()):
                        yield part
                    raise
                for part in cleaned(parts):
                    yield part
    except openai.APIError as exc:
        for part in cleaned(reader.end()):  # text held back is kept
            yield part
        raise _provider_error(exc) from exc
    if not reason:
        raise ProviderError(
            "upstream_incomplete", "The model's answer ended before it was finished."
        )
    for part in cleaned(reader.end()):
        yield part
    yield Finish(reason, usage, reader.tool_calls.calls())


def _as_sent(body: dict[str, Any]) -> dict[str, Any]:
    """Return create()'s arguments for a body sent as it is, already JSON.

    The SDK walks the arguments of create() through its type transforms (0.2 ms of CPU for
    one message, 1.4 ms for ten), which change nothing in a body of plain JSON; what goes
    as `extra_body` is sent untouched and takes precedence over the arguments.
    """
    arguments = {"model": body["model"], "messages": [], "extra_body": body}
    if body.get("stream"):
        arguments["stream"] = True  # the SDK's own handling of the response follows it
    return arguments


def _read(reader: DeltaReader, delta: dict[str, Any], chunk: dict[str, Any]) -> list[Part]:
    try:
        return reader.read(delta)
    except Malformed as exc:
        raise _malformed(repr(chunk).encode()) from exc


def cleaned(parts: list[Part]) -> list[Part]:
    """Return the parts joined by kind, their text safe to store and show."""
    return [
        Part(part.kind, {"content": clean_text(part.data["content"])}) for part in joined(parts)
    ]


async def _chunks(response: httpx2.Response) -> AsyncIterator[list[dict[str, Any]]]:
    """Yield the JSON objects of each read until [DONE] or the end; raise the SDK's errors."""
    decoder = SSEDecoder()
    body = response.aiter_bytes()
    try:
        async for data in body:
            chunks: list[dict[str, Any]] = []
            try:
                for payload in decoder.feed(data):
                    if payload.startswith(b"[DONE]"):
                        yield chunks
                        await _drain(body)
                        return
                    chunks.append(_json_object(payload, response.request))
            except (ProviderError, openai.APIError):
                if chunks:  # what came before the unreadable or failed one is kept
                    yield chunks
                raise
            yield chunks
            # A model faster than the relay leaves data waiting at every read, and reading
            # it never suspends: without a turn of the loop per read, readers (this
            # answer's too) and every other request would wait for the whole answer.
            await asyncio.sleep(0)
    except httpx2.TimeoutException as exc:
        raise openai.APITimeoutError(request=response.request) from exc
    except TRANSPORT_ERRORS as exc:
        raise openai.APIConnectionError(request=response.request) from exc


async def _drain(body: AsyncIterator[bytes]) -> None:
    # Reading an HTTP/1.1 body to its end lets its connection go back to the pool; a
    # server that keeps it open after [DONE] gets a short wait, then the connection closes.
    with contextlib.suppress(TimeoutError, *TRANSPORT_ERRORS):
        async with asyncio.timeout(DRAIN_TIMEOUT):
            async for _ in body:
                pass


def _json_object(payload: bytes, request: httpx2.Request) -> dict[str, Any]:
    try:
        chunk = wirejson.loads(payload)
    except ValueError as exc:  # UnicodeDecodeError too
        raise _malformed(payload) from exc
    if not isinstance(chunk, dict):
        raise _malformed(payload)
    if chunk.get("error"):
        raise _in_band_error(chunk["error"], request)
    return chunk


def _in_band_error(error: Any, request: httpx2.Request) -> openai.APIError:
    """Return what the SDK raises for an error sent inside the stream, after the 200."""
    message = error.get("message") if isinstance(error, dict) else None
    if not isinstance(message, str) or not message:
        message = "An error occurred during streaming"
    return openai.APIError(message, request, body=error)


def _fields(
    chunk: dict[str, Any],
) -> tuple[dict[str, Any] | None, str | None, TokenUsage | None]:
    """Return a chunk's delta, finish reason and usage, each None when absent."""
    try:
        usage = chunk.get("usage")
        choices = chunk.get("choices")
        choice = choices[0] if choices else None
        delta = choice.get("delta") if choice else None
        finish_reason = choice.get("finish_reason") if choice else None
        if not isinstance(delta, dict | None) or not isinstance(finish_reason, str | None):
            raise TypeError("delta must be an object and finish_reason a string")
        return delta, finish_reason, _usage(usage) if usage else None
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise _malformed(repr(chunk).encode()) from exc


def _usage(usage: dict[str, Any]) -> TokenUsage:
    prompt = int(usage["prompt_tokens"])
    completion = int(usage["completion_tokens"])
    # Some OpenAI-compatible servers leave the total out.
    total = int(usage.get("total_tokens") or prompt + completion)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total}


def _malformed(payload: bytes) -> ProviderError:
    logger.warning("upstream sent unreadable data: %r", payload[:200])
    return ProviderError("upstream_malformed", "The model sent a reply that could not be read.")


class SSEDecoder:
    """Split a Server-Sent Events byte stream into the data of its events.

    Lines end in LF, CRLF or CR, and may be cut anywhere between two reads (inside a
    UTF-8 character too: lines are split as bytes, and decoded as JSON once whole).
    Comments (keep-alives) and the event, id and retry fields are of no use here.
    """

    def __init__(self) -> None:
        self._line = b""  # the start of a line whose end has not arrived
        self._data: list[bytes] = []  # the data lines of the event being read
        self._after_cr = False

    def feed(self, data: bytes) -> list[bytes]:
        """Return the data of each event that `data` completes."""
        if self._after_cr and data.startswith(b"\n"):
            data = data[1:]  # the LF of a CRLF cut in two
        if b"\r" in data:
            self._after_cr = data.endswith(b"\r")
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        else:
            self._after_cr = False
        lines = (self._line + data).split(b"\n") if self._line else data.split(b"\n")
        self._line = lines.pop()
        events = []
        for line in lines:
            if not line:
                if self._data:
                    events.append(b"\n".join(self._data))
                    self._data = []
            elif line.startswith(b"data:"):
                self._data.append(line[6:] if line.startswith(b"data: ") else line[5:])
        return events


async def complete(request: dict[str, Any]) -> str:
    """Return the whole text of a short, non-streamed Chat Completions answer, without
    any inline thinking."""
    try:
        completion = await get_client(request["model"]).chat.completions.create(**_as_sent(request))
    except openai.APIError as exc:
        raise _provider_error(exc) from exc
    if not completion.choices:
        return ""
    thinking = InlineThinking()  # a reasoning model's title comes after its thoughts
    said = thinking.feed(completion.choices[0].message.content or "") + thinking.flush()
    return clean_text("".join(part.data["content"] for part in said if part.kind == DELTA))


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
    if isinstance(exc, openai.BadRequestError) and TOOLS_REFUSAL.search(str(exc.message)):
        return ProviderError(TOOLS_REFUSED, "The model does not accept tools.", str(exc.message))
    if isinstance(exc, openai.APIStatusError):
        return ProviderError("upstream_rejected", "The model provider rejected the request.")
    return ProviderError("upstream_error", "The model reported an error while answering.")
