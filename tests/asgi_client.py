"""
A client that drives the project's real ASGI application (chatsite.asgi) in-process.

Unlike Django's test clients it goes through ASGIHandler itself: CSRF is enforced, the
body arrives in chunks as a server would send it, and the client can disconnect halfway.
"""

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from chatsite.asgi import application

CSRF_TOKEN = "a" * 32
WAIT = 10.0  # seconds before a test gives up on the application


@dataclass
class Event:
    id: int | None
    event: str
    data: Any


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    _sent: asyncio.Queue[dict[str, Any]]
    _received: asyncio.Queue[dict[str, Any]]
    _task: asyncio.Task[None]
    _finished: bool = field(default=False)

    async def chunks(self) -> AsyncIterator[bytes]:
        """Yield each body message's bytes as the application sends them."""
        while not self._finished:
            message = await asyncio.wait_for(self._sent.get(), WAIT)
            self._finished = not message.get("more_body", False)
            if message.get("body"):
                yield message["body"]

    async def body(self) -> bytes:
        return b"".join([chunk async for chunk in self.chunks()])

    async def json(self) -> Any:
        return json.loads(await self.body())

    async def disconnect(self) -> None:
        """Close the connection as a browser would, and wait for the application to stop."""
        await self._received.put({"type": "http.disconnect"})
        await asyncio.wait_for(self._task, WAIT)


class AsgiClient:
    """A browser's session (cookie and CSRF token), or with `headers` and no cookie, a script."""

    def __init__(
        self, session_cookie: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        self.cookies = {} if headers else {"csrftoken": CSRF_TOKEN}
        self.headers = headers or {"x-csrftoken": CSRF_TOKEN}
        if session_cookie:
            self.cookies["sessionid"] = session_cookie

    async def get(self, path: str, headers: dict[str, str] | None = None) -> Response:
        return await self.request("GET", path, headers=headers)

    async def delete(self, path: str) -> Response:
        return await self.request("DELETE", path)

    async def post_form(self, path: str, fields: dict[str, str]) -> Response:
        return await self.request(
            "POST",
            path,
            body=urlencode(fields).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )

    async def post(
        self, path: str, data: Any = None, headers: dict[str, str] | None = None
    ) -> Response:
        body = b"" if data is None else json.dumps(data).encode()
        return await self.request(
            "POST", path, body=body, headers={"Content-Type": "application/json", **(headers or {})}
        )

    async def request(
        self, method: str, path: str, *, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> Response:
        path, _, query = path.partition("?")
        all_headers = {
            "host": "testserver",
            "cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items()),
            **{k.lower(): v for k, v in {**self.headers, **(headers or {})}.items()},
        }
        if not self.cookies:
            del all_headers["cookie"]
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "headers": [(k.encode(), v.encode()) for k, v in all_headers.items()],
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
        }
        received: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        sent: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        await received.put({"type": "http.request", "body": body, "more_body": False})
        task = asyncio.create_task(application(scope, received.get, sent.put))
        start = await asyncio.wait_for(sent.get(), WAIT)
        assert start["type"] == "http.response.start", start
        response_headers = {k.decode().lower(): v.decode() for k, v in start["headers"]}
        self._keep_cookies(start["headers"])
        return Response(start["status"], response_headers, sent, received, task)

    def _keep_cookies(self, headers: list[tuple[bytes, bytes]]) -> None:
        for name, value in headers:
            if name.lower() == b"set-cookie":
                for key, morsel in SimpleCookie(value.decode()).items():
                    self.cookies[key] = morsel.value


def parse_events(raw: bytes) -> tuple[list[Event], list[str]]:
    """Parse an SSE body into its events and its comment lines, as a browser would."""
    events: list[Event] = []
    comments: list[str] = []
    # The last piece is an event still being received (or empty): not dispatched yet.
    for block in raw.decode().split("\n\n")[:-1]:
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            if line.startswith(":"):
                comments.append(line[1:].strip())
            elif line:
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
        if "data" in fields:
            events.append(
                Event(
                    int(fields["id"]) if "id" in fields else None,
                    fields.get("event", "message"),
                    json.loads(fields["data"]),
                )
            )
    return events, comments


async def read_events(response: Response) -> list[Event]:
    """Read a whole SSE response and return its events."""
    return parse_events(await response.body())[0]


async def read_until(response: Response, count: int) -> tuple[list[Event], bytes]:
    """Read until `count` events have arrived; return them and the raw bytes so far."""
    raw = b""
    async for chunk in response.chunks():
        raw += chunk
        events, _ = parse_events(raw)
        if len(events) >= count:
            return events, raw
    raise AssertionError(f"the stream ended after {len(parse_events(raw)[0])} events")


def with_query(url: str, **params: object) -> str:
    """Add query parameters to a URL that may carry some already (a stream's token)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query) + [(name, str(value)) for name, value in params.items()]
    return urlunsplit(parts._replace(query=urlencode(query)))
