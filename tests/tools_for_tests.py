"""Tools for the tests, offered through CHAT_TOOLS by their dotted paths."""

import asyncio
import time

from chat.tools import ToolContext, ToolError, tool

STEPS = 3
STEP_SECONDS = 0.05
BLOCKS_SECONDS = 1.0


@tool(timeout=5)
async def slow_steps(context: ToolContext, steps: int = STEPS) -> dict[str, int]:
    """Work in steps, reporting progress after each."""
    for step in range(1, steps + 1):
        await asyncio.sleep(STEP_SECONDS)
        context.progress(f"step {step} of {steps}", step / steps)
    return {"steps": steps}


@tool(timeout=0.2)
async def hangs(context: ToolContext) -> dict[str, str]:
    """Never finishes."""
    await asyncio.Event().wait()
    return {}


@tool(timeout=30)
async def waits(context: ToolContext) -> dict[str, str]:
    """Runs until it is stopped."""
    await asyncio.Event().wait()
    return {}


@tool
def explodes(context: ToolContext) -> dict[str, str]:
    """Fails with a secret in its exception."""
    raise RuntimeError("secret connection string postgres://admin:hunter2@db")


@tool
def refuses(context: ToolContext) -> dict[str, str]:
    """Fails on purpose, with a message for the model."""
    raise ToolError("That city is not known.", code="unknown_city")


@tool
def threaded_progress(context: ToolContext) -> dict[str, bool]:
    """A sync tool, run in a thread, that reports progress."""
    context.progress("half way", 0.5)
    return {"done": True}


@tool
def not_json(context: ToolContext) -> object:
    """Returns what JSON cannot carry."""
    return {"when": object()}


@tool(timeout=0.2)
def blocks(context: ToolContext) -> dict[str, str]:
    """A sync tool stuck in a call for longer than its timeout."""
    time.sleep(BLOCKS_SECONDS)
    return {}
