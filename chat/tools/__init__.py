"""
Tools the model may call: Python functions on the server, run as the conversation's owner.

    from chat.tools import ToolContext, tool

    @tool(timeout=5)
    def weather(context: ToolContext, city: str) -> dict:
        "Today's weather in a city."
        ...

A tool receives a `ToolContext` (the user it runs as, and `progress()` to report how far
it has got) and its arguments, checked against its JSON schema (from its type hints, or
given). `CHAT_TOOLS` names the tools offered, by dotted path; chat/tools/builtin.py holds
the built-in ones. chat/tools/runner.py runs a call the model asked for.
"""

from chat.tools.registry import Tool, ToolContext, ToolError, offered_to, tool

__all__ = ["Tool", "ToolContext", "ToolError", "offered_to", "tool"]
