"""
An assistant's answer as the model's history: text and tool calls, in OpenAI's shape.

An answer that used tools came in rounds: each round's text, then the calls the model
asked for and their results, then the next round. Sent back upstream (the next round of
a tool loop, a later turn of the conversation) it is one assistant message per round
that called tools, with a `tool` message for each result, then the last round's text.
Reasoning is never sent back: providers ignore it or refuse it.
"""

import json
from typing import Any

from chat.answer import LayoutEntry
from chat.events import TOOL_START


def round_messages(text: str, calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return the messages of a round of the answer that called tools."""
    messages: list[dict[str, Any]] = [
        {
            "role": "assistant",
            "content": text or None,
            "tool_calls": [
                {
                    "id": call["id"],
                    "type": "function",
                    "function": {"name": call["name"], "arguments": json.dumps(call["arguments"])},
                }
                for call in calls
            ],
        }
    ]
    for call in calls:
        messages.append({"role": "tool", "tool_call_id": call["id"], "content": tool_output(call)})
    return messages


def tool_output(call: dict[str, Any]) -> str:
    """Return what the model is told a call gave: its result, or its error."""
    if "result" in call:
        return json.dumps(call["result"], ensure_ascii=False)
    if "error" in call:
        return json.dumps({"error": call["error"]["message"]}, ensure_ascii=False)
    return json.dumps({"error": "The user stopped the tool before it finished."})


def flattened(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return the history for a model offered no tools: each round's calls told in text.

    A model without tools refuses `tool` messages and tool calls in its history.
    """
    told: list[dict[str, Any]] = []
    for message in messages:
        if message["role"] == "tool" and told:
            told[-1]["content"] += f"\n[result: {message['content']}]"
        elif message.get("tool_calls"):
            calls = "".join(
                f"\n[called {call['function']['name']}({call['function']['arguments']})]"
                for call in message["tool_calls"]
            )
            told.append({"role": "assistant", "content": (message["content"] or "") + calls})
        else:
            told.append(message)
    return told


def answer_messages(
    content: str, tool_calls: list[dict[str, Any]], layout: list[LayoutEntry]
) -> list[dict[str, Any]]:
    """Return a stored answer as history: its rounds, from the layout of its events."""
    if not tool_calls:
        return [{"role": "assistant", "content": content}] if content else []
    messages: list[dict[str, Any]] = []
    text: list[str] = []
    calls: list[dict[str, Any]] = []
    offset = 0
    for entry in layout:
        if isinstance(entry, int):
            if calls:  # text after a round's calls belongs to the next round
                messages += round_messages("".join(text), calls)
                text, calls = [], []
            text.append(content[offset : offset + entry])
            offset += entry
        elif entry[0] == TOOL_START:
            calls.append(tool_calls[entry[1]])
    if calls:
        messages += round_messages("".join(text), calls)
    elif text:
        messages.append({"role": "assistant", "content": "".join(text)})
    return messages


# Sent after a cut-off answer, as the user, to have the model write on (Continue).
CONTINUE_PROMPT = (
    "Continue your last answer from exactly where it stopped. Do not repeat anything you "
    "already wrote, and do not comment on the continuation."
)
