"""
Conversations and messages: the writes the views ask for, each in one transaction.

Posting a message and answering again are the one way an answer of a conversation
starts, from the pages and the API alike: the rows are written, then the answer is
started; whatever stops it first is a `Refused` (chat/refusals.py).
"""

import contextlib
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction

from chat import attachment_prompt, attachments, context, db, limits, logs, refusals, tools, turns
from chat import generation as generations
from chat.eventlog import EventLogUnavailable
from chat.models import ApiKey, Conversation, Generation, Message
from chat.refusals import Refused
from chat.titles import shortened

type Posted = tuple[Message, Generation]


async def conversation_create(
    *,
    owner: Any,
    title: str = "",
    model: str = "",
    system_prompt: str = "",
    client_id: str | None = None,
) -> Conversation:
    return await _write(
        Conversation.objects.create,
        owner=owner,
        title=title,
        auto_title=not title,
        model=model or settings.CHAT_MODEL,
        system_prompt=system_prompt,
        client_id=client_id,
    )


async def conversation_start(
    *,
    owner: Any,
    content: str,
    model: str = "",
    system_prompt: str = "",
    client_id: str | None = None,
    api_key: ApiKey | None = None,
    attachment_ids: Sequence[str] = (),
) -> Posted:
    """Make a conversation with its first message, and start answering it.

    Raises Refused, leaving no conversation behind: nothing was said in it.
    """
    conversation = await conversation_create(
        owner=owner, model=model, system_prompt=system_prompt, client_id=client_id
    )
    try:
        return await message_post(
            conversation=conversation,
            content=content,
            api_key=api_key,
            attachment_ids=attachment_ids,
        )
    except Refused:
        await db.write(conversation.delete)
        raise


async def message_post(
    *,
    conversation: Conversation,
    content: str,
    api_key: ApiKey | None = None,
    attachment_ids: Sequence[str] = (),
) -> Posted:
    """Save the user's message and an empty answer, and start answering; or raise Refused.

    `api_key`: the key the answer is asked for with, charged with its usage.
    `attachment_ids`: the user's unsent uploads to send with it (chat/attachments.py).
    """
    asker = Asker.now(api_key)
    posted = await _write(
        _message_post, conversation.pk, content, asker, attachment_ids=attachment_ids
    )
    return await _started(posted)


async def answer_again(
    *, conversation: Conversation, content: str | None = None, api_key: ApiKey | None = None
) -> Posted:
    """Answer the user's last message anew (regenerate), its text replaced if given (edit).

    The answers after that message are deleted: the conversation goes on from the new one.
    Raises Refused.
    """
    return await _started(await _write(_answer_again, conversation.pk, content, Asker.now(api_key)))


async def _started(posted: Posted) -> Posted:
    try:
        await generations.start(posted[1])
    except EventLogUnavailable:
        raise refusals.event_log_unavailable() from None
    return posted


async def conversation_delete(*, conversation: Conversation) -> None:
    """Stop the conversation's running answers (closing their upstream requests), then delete it."""
    async for running in Generation.objects.running().filter(conversation=conversation):
        # The event log down: the answer finds its rows gone when it next writes.
        with contextlib.suppress(EventLogUnavailable):
            await generations.cancel(running)
    await _write(_delete, conversation)


def _delete(conversation: Conversation) -> None:
    with transaction.atomic():
        # Lock the answers first: one that is ending now commits its usage row before the
        # delete looks for rows to unlink, or finds its generation gone and writes none.
        answers = Generation.objects.select_for_update().filter(conversation=conversation)
        running = sum(1 for ended in answers.values_list("last_event_id", flat=True) if not ended)
        conversation.delete()
    # An answer still running can no longer claim its end (its rows are gone), so its
    # streaming slot is given back here, once.
    for _ in range(running):
        limits.release(conversation.owner_id)


async def conversation_rename(*, conversation: Conversation, title: str) -> None:
    conversation.title = title
    conversation.auto_title = False
    await _write(conversation.save, update_fields=["title", "auto_title", "updated_at"])


async def _write[**P, R](fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
    """db.write, with a queue too long for this request refused as busy (503)."""
    try:
        return await db.write(fn, *args, **kwargs)
    except db.WritesBusy:
        raise refusals.overloaded() from None


@dataclass(frozen=True, slots=True)
class Asker:
    """Who asks for an answer: the request (its id, for the logs) and the key, if any."""

    request_id: str
    api_key: ApiKey | None

    @classmethod
    def now(cls, api_key: ApiKey | None) -> "Asker":
        return cls(logs.request_id.get(), api_key)


def _message_post(
    conversation_id: Any, content: str, asker: Asker, *, attachment_ids: Sequence[str] = ()
) -> Posted:
    with transaction.atomic():
        conversation = _lock_idle(conversation_id)
        question = Message.objects.create(
            conversation=conversation, role=Message.Role.USER, content=content
        )
        # Attachments: claimed in this transaction, or the message is not posted.
        attachments.claim(conversation.owner, question, attachment_ids)
        if not conversation.title:
            conversation.title = shortened(content)
        return question, _start_answer(conversation, asker, regenerated=False)


def _answer_again(conversation_id: Any, content: str | None, asker: Asker) -> Posted:
    with transaction.atomic():
        conversation = _lock_idle(conversation_id)
        question = conversation.messages.filter(role=Message.Role.USER).last()
        if question is None:
            raise refusals.nothing_to_answer()
        if content is not None:
            question.content = content
            question.save(update_fields=["content", "updated_at"])
        conversation.messages.filter(created_at__gt=question.created_at).delete()
        return question, _start_answer(conversation, asker, regenerated=True)


def _lock_idle(conversation_id: Any) -> Conversation:
    # The row lock serialises two posts to one conversation (PostgreSQL); SQLite's
    # IMMEDIATE transactions serialise them already.
    conversation = (
        Conversation.objects.select_for_update().select_related("owner").get(pk=conversation_id)
    )
    if conversation.messages.filter(status=Message.Status.STREAMING).exists():
        raise refusals.busy()
    if conversation.model not in settings.CHAT_MODELS:
        raise refusals.model_withdrawn(conversation.model)
    return conversation


def _start_answer(conversation: Conversation, asker: Asker, *, regenerated: bool) -> Generation:
    """Create the empty answer and its generation, within the user's limits."""
    limits.admit(conversation.owner)
    try:
        return _create_answer(conversation, asker, regenerated=regenerated)
    except BaseException:
        limits.release(conversation.owner_id)
        raise


def _create_answer(conversation: Conversation, asker: Asker, *, regenerated: bool) -> Generation:
    answer = Message.objects.create(
        conversation=conversation,
        role=Message.Role.ASSISTANT,
        status=Message.Status.STREAMING,
    )
    conversation.save(update_fields=["title", "updated_at"])
    return Generation.objects.create(
        message=answer,
        conversation=conversation,
        model=conversation.model,
        request=build_request(conversation),
        regenerated=regenerated,
        request_id=asker.request_id,
        api_key=asker.api_key,
        process=this_process(),
    )


def this_process() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def build_request(conversation: Conversation) -> dict[str, Any]:
    """Return the Chat Completions body for the conversation's next answer.

    The oldest messages are left out when the whole conversation would not fit
    CHAT_CONTEXT_TOKENS; the system prompt and the newest message always go. Answers
    that called tools go with their calls and results; their reasoning never goes.
    """
    messages: list[dict[str, Any]] = []
    if conversation.system_prompt:
        messages.append({"role": "system", "content": conversation.system_prompt})
    history = conversation.messages.values_list(
        "pk", "role", "content", "tool_calls", "generation__event_layout"
    )
    attached = attachment_prompt.of_conversation(conversation)
    for pk, role, content, tool_calls, layout in history:
        if role == Message.Role.ASSISTANT:
            messages += turns.answer_messages(content, tool_calls, layout or [])
        elif pk in attached:
            # Attachments: their text trimmed to the context, images as parts (or named).
            budget = settings.CHAT_CONTEXT_TOKENS
            upstream = attachment_prompt.content(content, attached[pk], conversation.model, budget)
            messages.append({"role": role, "content": upstream})
        elif content:
            messages.append({"role": role, "content": content})
    if not tools.offered_to(conversation.model):
        messages = turns.flattened(messages)
    fitting = context.fit(messages, conversation.model, settings.CHAT_CONTEXT_TOKENS)
    return {"model": conversation.model, "messages": fitting}
