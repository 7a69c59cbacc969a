"""
Running a tool call the model asked for, as the events the answer streams.

`run()` yields `tool_start`, any `progress`, then `tool_end` with the result or an error.
Whatever goes wrong (an unknown tool, arguments that are not valid JSON or do not fit
the schema, a tool that raises or outlives its timeout, a result that cannot be sent)
becomes a `tool_end` with an error, which goes back to the model: never a failed answer.
Closing the generator (the user stopped the answer) cancels the tool.
"""

import asyncio
import json
import logging
import math
import threading
from collections.abc import AsyncGenerator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.db import close_old_connections

from chat.deltas import ToolCall
from chat.events import PROGRESS, TOOL_END, TOOL_START, Part
from chat.tools import schema
from chat.tools.registry import Tool, ToolContext, ToolError

logger = logging.getLogger(__name__)

MAX_RESULT_CHARS = 100_000
MAX_PROGRESS_CHARS = 200
TOOL_THREADS = 8  # sync tools running at once in a process

_threads = ThreadPoolExecutor(TOOL_THREADS, thread_name_prefix="tool")
_free_threads = threading.BoundedSemaphore(TOOL_THREADS)


class _Refused(Exception):
    """Arguments no tool may be run with."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.error = {"code": code, "message": message}


async def run(call: ToolCall, tools: Sequence[Tool], user: Any) -> AsyncGenerator[Part]:
    """Yield the events of one tool call, from its start to its end."""
    tool = next((offered for offered in tools if offered.name == call.name), None)
    try:
        arguments = _parsed_arguments(call)
    except _Refused as refused:
        yield _start(call, {})
        yield _end(call, error=refused.error)
        return
    yield _start(call, arguments)
    if tool is None:
        error = {"code": "unknown_tool", "message": f"There is no tool {call.name[:64]!r}."}
        yield _end(call, error=error)
        return
    if found := schema.problem(arguments, tool.parameters):
        yield _end(call, error={"code": "invalid_arguments", "message": found[:300]})
        return
    async for part in _running(call, tool, user, arguments):
        yield part


def _parsed_arguments(call: ToolCall) -> dict[str, Any]:
    """Return the call's arguments as an object, or raise _Refused saying why not."""
    if call.truncated:
        raise _Refused("invalid_arguments", "The arguments are too long.")
    try:
        arguments = json.loads(call.arguments or "{}", parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise _Refused("invalid_arguments", "The arguments are not valid JSON.") from None
    if not isinstance(arguments, dict):
        raise _Refused("invalid_arguments", "The arguments must be a JSON object.")
    if schema.depth(arguments) > schema.MAX_DEPTH:
        raise _Refused("invalid_arguments", "The arguments nest too deeply.")
    try:
        text = json.dumps(arguments, ensure_ascii=False, allow_nan=False)
        text.encode()
    except ValueError:  # 1e999 is read as infinity
        raise _Refused("invalid_arguments", "The arguments hold a number too large.") from None
    except UnicodeEncodeError:  # a lone surrogate, written as an escape
        raise _Refused("invalid_arguments", "The arguments are not valid text.") from None
    if "\x00" in text or "\\u0000" in text:
        raise _Refused("invalid_arguments", "The arguments hold a NUL character.")
    return arguments


async def _running(
    call: ToolCall, tool: Tool, user: Any, arguments: dict[str, Any]
) -> AsyncGenerator[Part]:
    loop = asyncio.get_running_loop()
    reports: asyncio.Queue[Part] = asyncio.Queue()

    def progress(message: str, fraction: float | None = None) -> None:
        # Callable from the tool's thread as well as from the loop.
        part = Part(PROGRESS, {"id": call.id, **_progress_fields(message, fraction)})
        loop.call_soon_threadsafe(reports.put_nowait, part)

    task = asyncio.create_task(_call(tool, ToolContext(user, progress), arguments))
    try:
        while not task.done():
            report = asyncio.ensure_future(reports.get())
            await asyncio.wait({task, report}, return_when=asyncio.FIRST_COMPLETED)
            report.cancel()
            if report.done() and not report.cancelled():
                yield _latest(report.result(), reports)
        if not reports.empty():
            yield _latest(reports.get_nowait(), reports)
        yield _end(call, **_outcome(call, tool, task))
    finally:
        task.cancel()


def _latest(report: Part, reports: asyncio.Queue[Part]) -> Part:
    # A tool reporting faster than the stream goes costs one event per wake, the newest.
    while not reports.empty():
        report = reports.get_nowait()
    return report


async def _call(tool: Tool, context: ToolContext, arguments: dict[str, Any]) -> Any:
    async with asyncio.timeout(tool.timeout):
        if tool.is_async:
            return await tool.function(context, **arguments)
        return await _in_tool_thread(tool, context, arguments)


async def _in_tool_thread(tool: Tool, context: ToolContext, arguments: dict[str, Any]) -> Any:
    """Run a sync tool on a thread of the tools' own.

    A timeout cannot stop a thread: it is left to finish, and its result dropped. The
    tools' own threads keep a stuck tool from taking the threads every answer's database
    work runs on, or a request's own; when all of them are stuck, calls are refused.
    """
    if not _free_threads.acquire(blocking=False):
        raise ToolError("The server's tools are all busy; try again shortly.", code="tool_busy")

    def call() -> Any:
        try:
            return tool.function(context, **arguments)
        finally:
            close_old_connections()
            _free_threads.release()

    return await asyncio.get_running_loop().run_in_executor(_threads, call)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _outcome(call: ToolCall, tool: Tool, task: asyncio.Task[Any]) -> dict[str, Any]:
    try:
        result = task.result()
    except ToolError as exc:
        return {"error": {"code": exc.code, "message": exc.message[:500]}}
    except TimeoutError:
        message = f"The tool took longer than {tool.timeout:g} seconds."
        return {"error": {"code": "tool_timeout", "message": message}}
    except Exception:
        logger.exception("tool %s failed", tool.name)
        return {"error": {"code": "tool_failed", "message": "The tool failed."}}
    try:
        text = json.dumps(result, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        logger.error("tool %s returned %r, which is not JSON", tool.name, type(result))
        return {"error": {"code": "tool_failed", "message": "The tool's result is not JSON."}}
    if len(text) > MAX_RESULT_CHARS or "\\u0000" in text:
        return {"error": {"code": "tool_failed", "message": "The tool's result is too large."}}
    return {"result": result}


def _progress_fields(message: str, fraction: float | None) -> dict[str, Any]:
    if isinstance(fraction, int | float) and math.isfinite(fraction):
        fraction = min(1.0, max(0.0, float(fraction)))
    else:
        fraction = None
    return {"message": str(message)[:MAX_PROGRESS_CHARS], "fraction": fraction}


def _start(call: ToolCall, arguments: dict[str, Any]) -> Part:
    return Part(TOOL_START, {"id": call.id, "name": call.name[:64], "arguments": arguments})


def _end(call: ToolCall, **outcome: Any) -> Part:
    return Part(TOOL_END, {"id": call.id, "name": call.name[:64], **outcome})
