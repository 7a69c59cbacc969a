"""
A fast fake OpenAI-compatible upstream for the benchmark, run as its own process:

    python -m bench.fake_upstream --port 9100

`POST /v1/chat/completions` with `stream: true` answers with real `chat.completion.chunk`
SSE frames. The last user message sets the answer, e.g. "tokens=500 rate=0 ttft=0":
`tokens` deltas, `rate` deltas per second (0: as fast as the socket takes them) and
`ttft` seconds before the first one. Delta i is `WORDS[i % len(WORDS)]`, a `~`, the
sender's CLOCK_MONOTONIC in microseconds and a space, so a client on this machine can
tell each token's delivery latency and check the text with `strip_stamps`.

`GET /stats` answers `{"open": n, "requests": n}` (connections open now, streams served).

A raw asyncio protocol, uvloop when installed, frames built from pre-encoded pieces:
one core relays far more tokens than the project under test (see `make bench`).
"""

import argparse
import asyncio
import json
import re
import time
from contextlib import suppress

WORDS = ["The", "tide", "rises", "twice", "daily;", "la", "marée", "monte", "潮", "🌊"]
STAMP = re.compile(r"~\d+ ")
PARAM = re.compile(r"\b(tokens|rate|ttft)=(\d+(?:\.\d+)?)")
HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n\r\n"
)
YIELD_EVERY = 32  # full speed: let other connections run between bursts


def expected_text(tokens: int) -> str:
    """The answer's text for `tokens` deltas, stamps removed."""
    return "".join(f"{WORDS[i % len(WORDS)]} " for i in range(tokens))


def strip_stamps(text: str) -> str:
    return STAMP.sub(" ", text)


def parse_params(prompt: str) -> tuple[int, float, float]:
    """Return (tokens, rate, ttft) from a prompt such as "tokens=500 rate=20 ttft=0"."""
    found = dict(PARAM.findall(prompt))
    return (
        int(float(found.get("tokens", 100))),
        float(found.get("rate", 0)),
        float(found.get("ttft", 0)),
    )


def _chunk(payload: bytes) -> bytes:
    """One HTTP/1.1 chunk holding one SSE frame."""
    frame = b"data: " + payload + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(frame), frame)


class Upstream:
    def __init__(self) -> None:
        self.open = 0
        self.requests = 0


class _Connection(asyncio.Protocol):
    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.task: asyncio.Task[None] | None = None
        self.writable = asyncio.Event()
        self.writable.set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        self.upstream.open += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.upstream.open -= 1
        self.writable.set()
        if self.task is not None:
            self.task.cancel()

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._next_request()

    def _next_request(self) -> None:
        if self.task is not None and not self.task.done():
            return
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        method, path, _ = head[0].split(" ", 2)
        headers = dict(line.lower().split(": ", 1) for line in head[1:] if ": " in line)
        length = int(headers.get("content-length", 0))
        if len(self.buffer) < end + 4 + length:
            return
        body = bytes(self.buffer[end + 4 : end + 4 + length])
        del self.buffer[: end + 4 + length]
        self.task = asyncio.get_running_loop().create_task(self._respond(method, path, body))
        self.task.add_done_callback(lambda _: self._next_request())

    def _write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def _send_json(self, status: str, data: object) -> None:
        body = json.dumps(data).encode()
        self._write(
            b"HTTP/1.1 %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
            % (status.encode(), len(body), body)
        )

    async def _respond(self, method: str, path: str, body: bytes) -> None:
        if method == "GET" and path == "/stats":
            self._send_json(
                "200 OK", {"open": self.upstream.open, "requests": self.upstream.requests}
            )
            return
        if method != "POST" or path != "/v1/chat/completions":
            self._send_json("404 Not Found", {"error": {"message": f"no route {path}"}})
            return
        request = json.loads(body)
        prompt = next(m["content"] for m in reversed(request["messages"]) if m["role"] == "user")
        self.upstream.requests += 1
        await self._stream(request, *parse_params(prompt))

    async def _stream(self, request: dict, tokens: int, rate: float, ttft: float) -> None:
        envelope = (
            json.dumps({"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 0})[
                :-1
            ]
            + f', "model": {json.dumps(request.get("model", ""))}, "choices": ['
        )
        prefix = (envelope + '{"index": 0, "delta": {"content": ').encode()
        suffix = b'}, "logprobs": null, "finish_reason": null}], "usage": null}'
        self._write(HEAD)
        start = time.monotonic()
        if ttft:
            await asyncio.sleep(ttft)
        for i in range(tokens):
            if rate:
                delay = start + ttft + i / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            elif i % YIELD_EVERY == 0:
                await asyncio.sleep(0)
            if not self.writable.is_set():
                await self.writable.wait()
            token = f"{WORDS[i % len(WORDS)]}~{time.monotonic_ns() // 1000} "
            self._write(_chunk(prefix + json.dumps(token).encode() + suffix))
        finish = '{"index": 0, "delta": {}, "logprobs": null, "finish_reason": "stop"}]'
        self._write(_chunk((envelope + finish + ', "usage": null}').encode()))
        if (request.get("stream_options") or {}).get("include_usage"):
            usage = {"prompt_tokens": 8, "completion_tokens": tokens, "total_tokens": tokens + 8}
            self._write(_chunk((envelope + f'], "usage": {json.dumps(usage)}}}').encode()))
        self._write(_chunk(b"[DONE]") + b"0\r\n\r\n")


async def serve(port: int) -> None:
    upstream = Upstream()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: _Connection(upstream), "127.0.0.1", port, backlog=4096
    )
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    port = parser.parse_args().port
    with suppress(KeyboardInterrupt):
        try:
            import uvloop
        except ImportError:
            asyncio.run(serve(port))
        else:
            uvloop.run(serve(port))


if __name__ == "__main__":
    main()
