"""
The reference peer: the same feature written the way a Python developer would write it
without the project. Starlette, sse-starlette and AsyncOpenAI; POST starts the answer
into an in-memory log, GET streams the log as SSE with pings. No accounts, no database.

    OPENAI_BASE_URL=... PEER_MODEL=... uvicorn bench.peers.starlette_peer:app
"""

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator

from openai import AsyncOpenAI
from sse_starlette import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

MODEL = os.environ.get("PEER_MODEL", "gpt-4o-mini")
HEARTBEAT = float(os.environ.get("PEER_HEARTBEAT", "15"))
KEEP_FINISHED = 60.0  # seconds a finished answer's log stays for late readers

client = AsyncOpenAI(max_retries=0)


class Log:
    def __init__(self) -> None:
        self.deltas: list[str] = []
        self.finished = False
        self.changed = asyncio.Event()

    def _wake(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()

    def append(self, text: str) -> None:
        self.deltas.append(text)
        self._wake()

    def finish(self) -> None:
        self.finished = True
        self._wake()


logs: dict[str, Log] = {}
tasks: set[asyncio.Task[None]] = set()


async def produce(key: str, content: str) -> None:
    log = logs[key]
    try:
        stream = await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": content}], stream=True
        )
        async with stream:
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    log.append(chunk.choices[0].delta.content)
    finally:
        log.finish()
        asyncio.get_running_loop().call_later(KEEP_FINISHED, logs.pop, key, None)


async def post_message(request: Request) -> Response:
    content = (await request.json())["content"]
    key = uuid.uuid4().hex
    logs[key] = Log()
    task = asyncio.create_task(produce(key, content))
    tasks.add(task)
    task.add_done_callback(tasks.discard)
    return JSONResponse({"id": key, "stream_url": f"/stream/{key}"}, status_code=202)


async def events(log: Log) -> AsyncIterator[dict[str, str]]:
    position = 0
    while True:
        changed = log.changed
        while position < len(log.deltas):
            position += 1
            data = json.dumps({"content": log.deltas[position - 1]}, ensure_ascii=False)
            yield {"id": str(position), "event": "delta", "data": data}
        if log.finished:
            yield {"id": str(position + 1), "event": "done", "data": "{}"}
            return
        await changed.wait()


async def stream(request: Request) -> Response:
    log = logs.get(request.path_params["key"])
    if log is None:
        return JSONResponse({"error": "not found"}, status_code=404)
    return EventSourceResponse(events(log), ping=HEARTBEAT)


app = Starlette(
    routes=[
        Route("/messages", post_message, methods=["POST"]),
        Route("/stream/{key}", stream),
    ]
)
