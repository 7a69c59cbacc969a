"""A conversation's title, written by the model after the first exchange."""

import logging
from typing import Any

from chat import db, provider
from chat.demo import DEMO_MODEL
from chat.models import Conversation, Generation, Message
from chat.provider import ProviderError

logger = logging.getLogger(__name__)

TITLE_LENGTH = 60
INSTRUCTION = (
    "Write a title of three to six words for this conversation. "
    "Answer with the title only: no quotes, no final punctuation."
)


async def title_after_first_answer(generation: Generation) -> None:
    """Ask the model for a title once the first answer is complete; keep ours on failure.

    `generation` comes with its message and conversation (and, from the write that made
    it, the question): an answer to a later question is told apart without a query.
    """
    reply, conversation_id = generation.message, generation.conversation_id
    if not generation.conversation.auto_title:
        return
    if Message.parent.is_cached(reply) and reply.parent and reply.parent.parent_id:
        return  # an answer to a later question
    exchange = await db.run(_first_exchange, conversation_id)
    if exchange is None:
        return
    model, question, answer = exchange
    request = {
        "model": model,
        "messages": [
            {"role": "system", "content": INSTRUCTION},
            {"role": "user", "content": question[:2000]},
            {"role": "assistant", "content": answer[:2000]},
            {"role": "user", "content": "Title?"},
        ],
        "max_tokens": 20,
    }
    try:
        title = clean_title(await provider.complete(request))
    except ProviderError as exc:
        logger.info("no title from the model: %s", exc.code)
        return
    if title:
        # Only while the title is still ours: the user may have renamed it meanwhile.
        untouched = Conversation.objects.filter(pk=conversation_id, auto_title=True)
        await db.write(untouched.update, title=title)


def _first_exchange(conversation_id: Any) -> tuple[str, str, str] | None:
    """The question and answer to title from: the conversation's first complete answer."""
    conversation = Conversation.objects.get(pk=conversation_id)
    # The demo model cannot summarise: it keeps the title taken from the first message.
    if not conversation.auto_title or conversation.model == DEMO_MODEL:
        return None
    complete = conversation.messages.filter(
        role=Message.Role.ASSISTANT, status=Message.Status.COMPLETE
    ).select_related("parent")[:2]
    answers = list(complete)
    if len(answers) != 1 or answers[0].parent is None:
        return None
    return conversation.model, answers[0].parent.content, answers[0].content


def clean_title(text: str) -> str:
    """Return a model's title as one plain line of at most TITLE_LENGTH characters."""
    return shortened(text).strip(" \"'`*#.:")


def shortened(text: str) -> str:
    """Return text as one line of at most TITLE_LENGTH characters, cut at a word."""
    line = " ".join(text.split())
    if len(line) <= TITLE_LENGTH:
        return line
    return line[: TITLE_LENGTH - 1].rsplit(" ", 1)[0] + "…"
