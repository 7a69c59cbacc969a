"""
How much of a conversation fits what we send upstream: token counts and trimming.

Tokens are counted with OpenAI's own encodings (bpe-openai: tiktoken's encodings with
tiktoken's API, shipped inside the package, so counting works offline) for the models
they belong to, and estimated at four characters a token for any other model.
"""

import functools
import math
from typing import Any

import bpe_openai

CHARS_PER_TOKEN = 4  # the usual estimate for English text
MESSAGE_OVERHEAD = 4  # tokens the chat format adds around each message
# What an image part costs: OpenAI's price of a 1024 by 1024 image in high detail, for all.
IMAGE_TOKENS = 765


@functools.cache
def _encoding(model: str) -> bpe_openai.Encoding | None:
    try:
        return bpe_openai.encoding_for_model(model)
    except bpe_openai.UnsupportedModelError:
        return None


def count_tokens(text: str, model: str) -> tuple[int, bool]:
    """Return the number of tokens in text for the model, and whether it is an estimate."""
    encoding = _encoding(model)
    if encoding is None:
        return math.ceil(len(text) / CHARS_PER_TOKEN), True
    return len(encoding.encode(text, disallowed_special=())), False


def message_tokens(messages: list[dict[str, Any]], model: str) -> tuple[int, bool]:
    """Return the tokens a message list costs as a prompt, and whether it is an estimate."""
    total, estimated = 0, False
    for message in messages:
        count, guess = count_tokens(_text_of(message), model)
        total += count + MESSAGE_OVERHEAD + IMAGE_TOKENS * _images_in(message)
        estimated |= guess
    return total, estimated


def fit(messages: list[dict[str, Any]], model: str, budget: int) -> list[dict[str, Any]]:
    """Drop the oldest messages until the rest fit the budget.

    The system prompt and the newest message always stay, even if they alone are over.
    A message that called tools goes or stays with the results that follow it: a result
    without its call is a request the model refuses.
    """
    system = [m for m in messages[:1] if m["role"] == "system"]
    room = budget - message_tokens(system, model)[0]
    units: list[list[dict[str, Any]]] = []
    for message in messages[len(system) :]:
        if message["role"] == "tool" and units:
            units[-1].append(message)
        else:
            units.append([message])
    kept: list[list[dict[str, Any]]] = []
    for unit in reversed(units):
        cost = message_tokens(unit, model)[0]
        if kept and cost > room:
            break
        kept.append(unit)
        room -= cost
    return system + [message for unit in reversed(kept) for message in unit]


def trimmed(text: str, model: str, tokens: int) -> str:
    """Return the start of text that fits in `tokens` tokens of the model."""
    if tokens <= 0:
        return ""
    encoding = _encoding(model)
    if encoding is None:
        return text[: tokens * CHARS_PER_TOKEN]
    encoded = encoding.encode(text, disallowed_special=())
    return text if len(encoded) <= tokens else encoding.decode(encoded[:tokens])


def _text_of(message: dict[str, Any]) -> str:
    """Return what of a message the model reads: its content's text and any tool calls."""
    calls = message.get("tool_calls") or []
    called = [call["function"]["name"] + call["function"]["arguments"] for call in calls]
    return "\n".join([content_text(message.get("content")), *called])


def content_text(content: Any) -> str:
    """Return a message content's text: the string, or the text parts of a list."""
    if isinstance(content, list):
        return "\n".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and part.get("type") == "text" and "text" in part
        )
    return content or ""


def _images_in(message: dict[str, Any]) -> int:
    content = message.get("content")
    if not isinstance(content, list):
        return 0
    return sum(1 for part in content if isinstance(part, dict) and part.get("type") == "image_url")
