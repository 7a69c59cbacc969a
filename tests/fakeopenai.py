"""A fake OpenAI Chat Completions server for tests, spoken to over real HTTP by the real SDK.

    fake = FakeOpenAI()
    fake.start()
    fake.reply_to("Hi", Reply(tokens=["Hel", "lo"], token_delay=0.01))
    client = openai.AsyncOpenAI(base_url=fake.base_url, api_key="test-key")
    ...
    fake.stop()

The server runs its own asyncio event loop in a daemon thread, so it keeps answering
whichever event loop or thread the code under test runs on. It speaks just enough
HTTP/1.1 (Content-Length request bodies, chunked responses, keep-alive) for the SDK's
connection pool, and can misbehave on request: delays, error statuses, dropped
connections, bytes split inside UTF-8 characters, in-band errors, bad JSON, hangs.
Standard library only.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import itertools
import json
import re
import ssl
import threading
import time
from collections.abc import Callable, Coroutine
from contextlib import suppress
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Self

CHAT_COMPLETIONS_PATH = "/v1/chat/completions"

# OpenAI's error `type` and `code` for the statuses tests ask for.
_ERROR_KINDS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "not_found"),
    411: ("invalid_request_error", None),
    429: ("requests", "rate_limit_exceeded"),
}


@dataclass
class Reply:
    """How the fake answers one request: the tokens, their pacing, and any misbehaviour."""

    # Each token is a content delta's text, or a whole delta object to send as it is
    # ({"reasoning": ...}, {"reasoning_content": ...}, {"tool_calls": [...]}).
    tokens: list[str | dict[str, Any]]
    # Seconds between the response headers and the first body bytes.
    first_token_delay: float = 0.0
    # Seconds between two content chunks.
    token_delay: float = 0.0
    # "stop" or "length"; None sends no chunk with a finish_reason.
    finish_reason: str | None = "stop"
    # Send the usage chunk when the request asks for it (stream_options.include_usage).
    usage: bool = True
    # Any other status answers with OpenAI's JSON error body instead of a stream.
    status: int = 200
    # Seconds for a Retry-After header (for 429).
    retry_after: float | None = None
    # With another status: the error body's message instead of "Fake OpenAI says ...".
    error_message: str | None = None
    # Close the connection after this many content chunks: no finish chunk, no [DONE].
    drop_after: int | None = None
    # With drop_after: write the first half of the next SSE frame before closing.
    mid_frame: bool = False
    # Write every SSE frame in small pieces, cutting inside multi-byte UTF-8 characters.
    split_writes: bool = False
    # After the tokens, send `data: {"error": {"message": ...}}` instead of finishing.
    in_band_error: str | None = None
    # After the tokens, send a `data:` line that is not valid JSON instead of finishing.
    malformed: bool = False
    # After the tokens, send nothing more until the client closes the connection.
    hang: bool = False
    # End the stream's lines with CRLF instead of LF.
    crlf: bool = False
    # Send every content frame in one write, as a model faster than its reader would.
    burst: bool = False
    # Send an SSE comment line (a keep-alive) before every frame.
    keep_alive: bool = False
    # End the stream with `data: [DONE]`; False ends the body without it.
    done: bool = True
    # The reply to the next request of a tool loop (its results sent), and so on down the
    # chain; the last reply answers every later round.
    after_tools: Reply | None = None
    # Answer a request that offers tools with 400 "does not support tools", as Ollama does.
    refuse_tools: bool = False


def echo_reply(prompt: str) -> Reply:
    """The default answer: "Echo: <prompt>", one token per word and its trailing space."""
    return Reply(tokens=re.findall(r"\S+\s*|\s+", f"Echo: {prompt}"))


class FakeOpenAI:
    """An OpenAI-compatible HTTP server on 127.0.0.1, running in a background thread."""

    # Builds the reply for a prompt that has no reply_to() script; echo_reply after reset().
    default: Callable[[str], Reply]
    # Every request since reset(), in arrival order: {"path", "headers", "body"}, where the
    # header names are lower-cased and body is the parsed JSON (None if it was not JSON).
    requests: list[dict[str, Any]]
    # Streams since reset() that the server finished normally, [DONE] included.
    completed: int
    # Streams since reset() that the client closed before the server finished them.
    aborted: int
    # TCP connections accepted since reset().
    connections: int
    _scripts: dict[str, Reply]

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        """`ssl_context`: serve HTTPS with it (its certificate must name 127.0.0.1)."""
        self._ssl = ssl_context
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._port: int | None = None
        self._ids = itertools.count(1)
        self._handlers: set[asyncio.Task[None]] = set()
        self._generation = 0
        self.reset()

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The SDK's base_url for this server, "http://127.0.0.1:PORT/v1" (https with TLS)."""
        if self._port is None:
            raise RuntimeError("FakeOpenAI is not running: call start() first")
        return f"{'https' if self._ssl else 'http'}://127.0.0.1:{self._port}/v1"

    def start(self) -> None:
        """Start serving on a free port in a daemon thread; return once it is listening."""
        if self._thread is not None:
            raise RuntimeError("FakeOpenAI is already running")
        listening = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(
            target=asyncio.run,
            args=(self._main(listening, failure),),
            name="FakeOpenAI",
            daemon=True,
        )
        self._thread.start()
        listening.wait()
        if failure:
            self._thread.join()
            self._thread = None
            raise RuntimeError("FakeOpenAI could not start") from failure[0]

    def stop(self) -> None:
        """Close every connection, stop listening and wait for the server thread to end."""
        if self._thread is None:
            return
        assert self._loop is not None and self._stopping is not None
        self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(timeout=10)
        if self._thread.is_alive():
            raise RuntimeError("FakeOpenAI did not stop within 10 seconds")
        self._thread = None
        self._port = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- scripting and inspection (called from the test thread) ------------------------

    def reply_to(self, prompt: str, reply: Reply) -> None:
        """Answer with reply whenever the last user message's content equals prompt."""
        with self._lock:
            self._scripts[prompt] = reply

    def reset(self) -> None:
        """Forget scripted replies, recorded requests and counters; restore the default."""
        with self._lock:
            self._generation += 1
            self._scripts = {}
            self.default = echo_reply
            self.requests = []
            self.completed = 0
            self.aborted = 0
            self.connections = 0

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Block the calling thread until predicate() is true; fail with the server's state."""
        deadline = time.monotonic() + timeout
        pause = 0.001
        while not predicate():
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {_describe(predicate)}\n"
                    f"fake OpenAI state: completed={self.completed}, aborted={self.aborted}, "
                    f"connections={self.connections}, "
                    f"requests={[request['path'] for request in self.requests]}"
                )
            time.sleep(pause)
            pause = min(pause * 2, 0.02)

    # -- the server (runs on the server thread's event loop) ---------------------------

    async def _main(self, listening: threading.Event, failure: list[BaseException]) -> None:
        """Listen until stop() is called, then cancel the connections still open."""
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        try:
            server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self._ssl)
            self._port = server.sockets[0].getsockname()[1]
        except Exception as error:
            failure.append(error)
            return
        finally:
            listening.set()
        await self._stopping.wait()
        server.close()
        for handler in self._handlers:
            handler.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve the requests of one connection until either side closes it."""
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        with self._lock:
            self.connections += 1
        connection = _Connection(reader, writer)
        try:
            while (request := await connection.read_request()) is not None:
                if not await self._respond(connection, request):
                    break
        except _BadRequest as error:
            with suppress(ConnectionError):
                await connection.send_json(error.status, _error_body(error.status, str(error)))
        except ConnectionError:
            pass
        except asyncio.CancelledError:
            connection.abort()
            raise
        finally:
            self._handlers.discard(handler)
            await connection.close()

    async def _respond(self, connection: _Connection, request: _Request) -> bool:
        """Answer one request; return whether the connection may carry another one."""
        body = _json_or_none(request.body)
        with self._lock:
            generation = self._generation
            self.requests.append({"path": request.path, "headers": request.headers, "body": body})

        if request.method != "POST" or request.route != CHAT_COMPLETIONS_PATH:
            message = f"Unknown request URL: {request.method} {request.path}."
            await connection.send_json(404, _error_body(404, message))
            return request.keep_alive
        if not isinstance(body, dict):
            message = "We could not parse the JSON body of your request."
            await connection.send_json(400, _error_body(400, message))
            return request.keep_alive

        reply = self._reply_for(_last_user_prompt(body))
        for _ in range(_tool_rounds(body)):
            reply = reply.after_tools or reply
        if reply.refuse_tools and body.get("tools"):
            reply = Reply(
                [], status=400, error_message=f"{body.get('model')} does not support tools"
            )
        if reply.status != 200:
            headers = {} if reply.retry_after is None else {"retry-after": f"{reply.retry_after:g}"}
            body = _error_body(reply.status, reply.error_message)
            await connection.send_json(reply.status, body, headers)
            return request.keep_alive

        answer = _Answer(f"chatcmpl-fake{next(self._ids):06d}", body, reply)
        if body.get("stream"):
            outcome = await connection.unless_client_leaves(_stream(connection, answer, reply))
            self._tally(outcome, generation)
        else:
            outcome = await connection.unless_client_leaves(_send_whole(connection, answer, reply))
        return request.keep_alive and outcome in (_Outcome.COMPLETED, _Outcome.ERRORED)

    def _reply_for(self, prompt: str) -> Reply:
        """The scripted reply for prompt, or the default one."""
        with self._lock:
            scripted = self._scripts.get(prompt)
            default = self.default
        return scripted if scripted is not None else default(prompt)

    def _tally(self, outcome: _Outcome, generation: int) -> None:
        """Count a finished stream, unless reset() was called since it started."""
        with self._lock:
            if generation != self._generation:
                return
            if outcome is _Outcome.COMPLETED:
                self.completed += 1
            elif outcome is _Outcome.ABORTED:
                self.aborted += 1


class _Outcome(enum.Enum):
    """How a response ended."""

    COMPLETED = "completed"  # everything written, [DONE] included for a stream
    ERRORED = "errored"  # ended early on purpose, but as a complete HTTP response
    DROPPED = "dropped"  # the server cut the connection mid-body
    ABORTED = "aborted"  # the client closed the connection first


async def _stream(connection: _Connection, answer: _Answer, reply: Reply) -> _Outcome:
    """Send a streamed answer as SSE frames, misbehaving as the reply asks."""
    await connection.start_chunked(
        {"content-type": "text/event-stream", "cache-control": "no-cache"}
    )
    await asyncio.sleep(reply.first_token_delay)

    async def send(payload: object, *, last: bool = False) -> None:
        frame = _sse_frame(payload)
        if reply.keep_alive:
            frame = b": keep-alive\n\n" + frame
        if reply.crlf:
            frame = frame.replace(b"\n", b"\r\n")
        await connection.send_chunks(frame, split=reply.split_writes, last=last)

    await send(answer.chunk({"role": "assistant", "content": ""}))
    if reply.burst:
        frames = b"".join(_sse_frame(answer.chunk(_delta(token))) for token in reply.tokens)
        await connection.send_chunks(frames, split=False, last=False)
    for index, token in enumerate([] if reply.burst else reply.tokens):
        if index == reply.drop_after:
            return await _drop(connection, answer.chunk(_delta(token)), reply.mid_frame)
        if index:
            await asyncio.sleep(reply.token_delay)
        await send(answer.chunk(_delta(token)))

    finish = answer.chunk({}, reply.finish_reason)
    if reply.drop_after is not None:
        return await _drop(connection, finish, reply.mid_frame)
    if reply.in_band_error is not None:
        await send({"error": _error_body(500, reply.in_band_error)["error"]}, last=True)
        return _Outcome.ERRORED
    if reply.malformed:
        await send(_MalformedJSON(), last=True)
        return _Outcome.ERRORED
    if reply.hang:
        await asyncio.Event().wait()  # until the client leaves (or stop() cancels us)

    if reply.finish_reason is not None:
        await send(finish)
    if answer.include_usage and reply.usage:
        await send(answer.usage_chunk())
    if reply.done:
        await send("[DONE]", last=True)
    else:
        await connection.end_chunked()
    return _Outcome.COMPLETED


async def _drop(connection: _Connection, next_chunk: dict[str, Any], mid_frame: bool) -> _Outcome:
    """End a stream abruptly: maybe half of the next frame, then no more (the caller closes)."""
    if mid_frame:
        frame = _sse_frame(next_chunk)
        await connection.send_chunks(frame[: len(frame) // 2])
    return _Outcome.DROPPED


async def _send_whole(connection: _Connection, answer: _Answer, reply: Reply) -> _Outcome:
    """Send a non-streamed answer: one chat.completion JSON object."""
    await asyncio.sleep(reply.first_token_delay)
    if reply.hang:
        await asyncio.Event().wait()
    await connection.send_json(200, answer.completion())
    return _Outcome.COMPLETED


class _Answer:
    """The JSON objects of one answer, which share its id, timestamp, model and usage."""

    def __init__(self, completion_id: str, body: dict[str, Any], reply: Reply) -> None:
        self.id = completion_id
        self.created = int(time.time())
        self.model = str(body.get("model", ""))
        self.reply = reply
        stream_options = body.get("stream_options")
        self.include_usage = isinstance(stream_options, dict) and bool(
            stream_options.get("include_usage")
        )
        prompt_tokens = sum(len(_text_of(message).split()) for message in _messages(body))
        self.usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(reply.tokens),
            "total_tokens": prompt_tokens + len(reply.tokens),
        }

    def _envelope(self, kind: str, choices: list[dict[str, Any]]) -> dict[str, Any]:
        """The fields every chat.completion and chat.completion.chunk object has."""
        return {
            "id": self.id,
            "object": kind,
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }

    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        """A chat.completion.chunk carrying delta (with usage: null when usage was asked for)."""
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        chunk = self._envelope("chat.completion.chunk", [choice])
        if self.include_usage:
            chunk["usage"] = None
        return chunk

    def usage_chunk(self) -> dict[str, Any]:
        """The last chunk of a stream that asked for usage: no choices, the token counts."""
        return {**self._envelope("chat.completion.chunk", []), "usage": self.usage}

    def completion(self) -> dict[str, Any]:
        """The whole answer as a chat.completion object."""
        text = "".join(token for token in self.reply.tokens if isinstance(token, str))
        message = {"role": "assistant", "content": text, "refusal": None}
        choice = {
            "index": 0,
            "message": message,
            "logprobs": None,
            "finish_reason": self.reply.finish_reason,
        }
        return {**self._envelope("chat.completion", [choice]), "usage": self.usage}


def _delta(token: str | dict[str, Any]) -> dict[str, Any]:
    """The delta of a token: a content delta for text, the object itself otherwise."""
    return token if isinstance(token, dict) else {"content": token}


class _MalformedJSON:
    """Marks the payload of a frame that must not parse as JSON."""


def _sse_frame(payload: object) -> bytes:
    """One SSE event, `data: ...\\n\\n`, with non-ASCII characters raw in UTF-8."""
    if isinstance(payload, _MalformedJSON):
        data = '{"id": "chatcmpl-broken", "choices": [{"delta": {"content": "oops'
    elif isinstance(payload, str):
        data = payload
    else:
        data = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return f"data: {data}\n\n".encode()


def _split_inside_characters(frame: bytes, size: int = 16) -> list[bytes]:
    """Cut frame every size bytes, inside every multi-byte character and between its newlines."""
    cuts = set(range(size, len(frame), size))
    cuts.update(index + 1 for index, byte in enumerate(frame) if byte >= 0xC0)  # lead bytes
    cuts.add(len(frame) - 1)
    bounds = [0, *sorted(cut for cut in cuts if 0 < cut < len(frame)), len(frame)]
    return [frame[start:end] for start, end in itertools.pairwise(bounds)]


# -- HTTP/1.1 -----------------------------------------------------------------------------


@dataclass
class _Request:
    """One parsed HTTP request."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    keep_alive: bool

    @property
    def route(self) -> str:
        """The path without its query string, or the origin of a proxy's absolute-form
        target ("http://host/v1/..."), which a server must accept too."""
        target = self.path.partition("?")[0]
        scheme, found, rest = target.partition("://")
        return "/" + rest.partition("/")[2] if found else scheme


class _BadRequest(Exception):
    """A request the server cannot parse; answered with status, then the connection closes."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Connection:
    """One client connection: reads requests, writes responses, notices the client leaving."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        # Bytes of the next request read while watching for the client to leave.
        self._early_bytes = b""

    async def read_request(self) -> _Request | None:
        """Read the next request; None if the client closed the connection instead."""
        try:
            head = self._early_bytes + await self._reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None
        except asyncio.LimitOverrunError as error:
            raise _BadRequest(431, "Request header fields too large.") from error
        self._early_bytes = b""

        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        try:
            method, path, version = request_line.split(" ")
        except ValueError:
            raise _BadRequest(400, f"Malformed request line: {request_line!r}.") from None
        headers: dict[str, str] = {}
        for line in filter(None, header_lines):
            name, colon, value = line.partition(":")
            if not colon:
                raise _BadRequest(400, f"Malformed header line: {line!r}.")
            name, value = name.strip().lower(), value.strip()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        if "transfer-encoding" in headers:
            raise _BadRequest(411, "Send the request body with a Content-Length.")
        try:
            body = await self._reader.readexactly(int(headers.get("content-length", "0")))
        except ValueError:
            raise _BadRequest(400, "Invalid Content-Length.") from None
        except asyncio.IncompleteReadError:
            return None

        connection = headers.get("connection", "").lower()
        keep_alive = connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
        return _Request(method, path, headers, body, keep_alive)

    async def send_json(
        self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        """Write a whole JSON response with a Content-Length."""
        body = json.dumps(payload, ensure_ascii=False).encode()
        self._write_head(
            status,
            {
                "content-type": "application/json",
                "content-length": str(len(body)),
                **(headers or {}),
            },
        )
        self._writer.write(body)
        await self._writer.drain()

    async def start_chunked(self, headers: dict[str, str]) -> None:
        """Write the head of a 200 response whose body follows in chunks."""
        self._write_head(200, {**headers, "transfer-encoding": "chunked"})
        await self._writer.drain()

    async def send_chunks(self, data: bytes, *, split: bool = False, last: bool = False) -> None:
        """Write data as one HTTP chunk, or several small ones; last also ends the body."""
        pieces = _split_inside_characters(data) if split else [data]
        for index, piece in enumerate(pieces):
            frame = b"%x\r\n%s\r\n" % (len(piece), piece)
            if last and index == len(pieces) - 1:
                frame += b"0\r\n\r\n"
            self._writer.write(frame)
            await self._writer.drain()

    async def end_chunked(self) -> None:
        """End a chunked body without writing more data."""
        self._writer.write(b"0\r\n\r\n")
        await self._writer.drain()

    async def unless_client_leaves(self, work: Coroutine[Any, Any, _Outcome]) -> _Outcome:
        """Run work while watching the socket; ABORTED if the client closes it first."""
        working = asyncio.create_task(work)
        watching = asyncio.create_task(self._until_client_leaves())
        try:
            await asyncio.wait({working, watching}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (working, watching):
                task.cancel()
            await asyncio.gather(working, watching, return_exceptions=True)
        if working.cancelled() or isinstance(working.exception(), ConnectionError):
            return _Outcome.ABORTED
        return working.result()

    async def _until_client_leaves(self) -> None:
        """Return when the client closes the connection (EOF or reset)."""
        try:
            data = await self._reader.read(1)
        except ConnectionError:
            return
        if data:
            # The client is still there and already sending its next request: keep the byte
            # for read_request and stop watching.
            self._early_bytes += data
            await asyncio.Event().wait()

    def _write_head(self, status: int, headers: dict[str, str]) -> None:
        """Write a response's status line and headers."""
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Unknown"
        lines = [f"HTTP/1.1 {status} {reason}", *(f"{k}: {v}" for k, v in headers.items())]
        self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    def abort(self) -> None:
        """Drop the connection at once, discarding unsent bytes."""
        self._writer.transport.abort()

    async def close(self) -> None:
        """Flush what was written, then close the connection."""
        self._writer.close()
        with suppress(ConnectionError):
            await self._writer.wait_closed()


# -- request bodies -----------------------------------------------------------------------


def _json_or_none(body: bytes) -> Any:
    """The parsed JSON body, or None if it is not JSON."""
    try:
        return json.loads(body)
    except ValueError:
        return None


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The request's messages that are JSON objects."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return []
    return [message for message in messages if isinstance(message, dict)]


def _text_of(message: dict[str, Any]) -> str:
    """A message's text: its string content, or the text parts of a content list."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def _tool_rounds(body: dict[str, Any]) -> int:
    """How many rounds of tool calls the request's history holds since its last user message."""
    rounds = 0
    for message in reversed(_messages(body)):
        if message.get("role") == "user":
            break
        rounds += message.get("role") == "assistant" and bool(message.get("tool_calls"))
    return rounds


def _last_user_prompt(body: dict[str, Any]) -> str:
    """The text of the last user message ("" if there is none)."""
    users = [message for message in _messages(body) if message.get("role") == "user"]
    return _text_of(users[-1]) if users else ""


def _error_body(status: int, message: str | None = None) -> dict[str, Any]:
    """OpenAI's JSON error envelope for an HTTP status."""
    default_kind = ("server_error", None) if status >= 500 else ("invalid_request_error", None)
    kind, code = _ERROR_KINDS.get(status, default_kind)
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    return {
        "error": {
            "message": message or f"Fake OpenAI says {status} {phrase}.",
            "type": kind,
            "param": None,
            "code": code,
        }
    }


def _describe(predicate: Callable[[], bool]) -> str:
    """The source line of a predicate (usually a lambda), or its repr."""
    try:
        return inspect.getsource(predicate).strip()
    except (OSError, TypeError):
        return repr(predicate)
