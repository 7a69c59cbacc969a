"""
Token accounting: what each answer cost, recorded once it ends.

Counts come from the upstream's usage chunk; when it sends none they are counted here
(tiktoken encodings for known models, an estimate otherwise) and flagged as estimated.
"""

from typing import Any

from chat import context
from chat.models import Generation, Usage


def record(
    *,
    user_id: Any,
    request: dict[str, Any],
    text: str,
    usage: dict[str, int] | None,
    cached: bool,
    generation: Generation | None = None,
) -> Usage:
    """Store the tokens one answer cost; `generation` is None for a stateless completion."""
    model = request["model"]
    if usage:
        prompt, completion, estimated = usage["prompt_tokens"], usage["completion_tokens"], False
    else:
        prompt, _ = context.message_tokens(request["messages"], model)
        completion, _ = context.count_tokens(text, model)
        estimated = True
    return Usage.objects.create(
        user_id=user_id,
        model=model,
        prompt_tokens=prompt,
        completion_tokens=completion,
        estimated=estimated,
        cached=cached,
        generation=generation,
    )
