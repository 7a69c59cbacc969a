"""
Conversations and messages: the writes the views ask for, each in one transaction.

Posting a message, answering again and continuing are the one way an answer of a
conversation starts, from the pages and the API alike: the rows are written, then the
answer is started; whatever stops it first is a `Refused` (chat/refusals.py).

Nothing said is ever deleted: a new answer to a question, or an edited question, is a
new version beside the old one (chat/branches.py), and becomes the branch on screen.
"""

import contextlib
import os
import socket
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Concatenate

from django.conf import settings
from django.db import transaction

from chat import attachments, db, limits, logs, refusals, turns
from chat import generation as generations
from chat.branches import Tree, leaf_after_switch
from chat.eventlog import EventLogUnavailable
from chat.models import ApiKey, Conversation, Generation, Message
from chat.refusals import Refused
from chat.titles import shortened
from chat.transcript import Transcript

type Posted = tuple[Message, Generation]


@dataclass(frozen=True, slots=True)
class Owned:
    """A conversation by its id and its owner (the request's user), not read yet: the
    write that starts an answer finds it (or refuses with 404) in its own transaction,
    with no trip of its own."""

    pk: Any
    owner: Any

    @property
    def owner_id(self) -> Any:
        return self.owner.pk


type Answered = Conversation | Owned

# `parent_id` of a new message: after the last message of the branch on screen.
AT_LEAF: Any = object()


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
    conversation: Answered,
    content: str,
    api_key: ApiKey | None = None,
    parent_id: Any = AT_LEAF,
    attachment_ids: Sequence[str] = (),
) -> Posted:
    """Save the user's message and an empty answer, and start answering; or raise Refused.

    `parent_id`: the answer the message follows (None: a new first message); by default
    the last message on screen. `api_key`: the key the answer is asked for with, charged
    with its usage. `attachment_ids`: the user's unsent uploads to send with it
    (chat/attachments.py).
    """
    asker = Asker.now(api_key)
    posted = await _write(
        _message_post,
        conversation,
        content,
        asker,
        parent_id,
        attachment_ids=attachment_ids,
    )
    return await _started(posted)


async def answer_again(
    *,
    conversation: Answered,
    content: str | None = None,
    question_id: Any = None,
    api_key: ApiKey | None = None,
) -> Posted:
    """Answer a question of the user's anew, as a new version of its answer (regenerate).

    With `content`, the question is asked anew with that text instead, as a new version
    of the question (edit). `question_id`: by default the last question on screen.
    Raises Refused.
    """
    asker = Asker.now(api_key)
    written = await _write(_answer_again, conversation, content, question_id, asker)
    return await _started(written)


async def answer_continue(*, conversation: Answered, api_key: ApiKey | None = None) -> Posted:
    """Have the model write on where the last answer on screen stopped, into that answer.

    Only an answer cut off at the length limit or stopped by the user goes on. Raises
    Refused.
    """
    return await _started(await _write(_answer_continue, conversation, Asker.now(api_key)))


async def branch_switch(*, conversation: Answered, message_id: Any) -> None:
    """Show the branch through this message: down to its newest answer. Raises Refused."""
    await _write(_branch_switch, conversation, message_id)


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
    answered: Answered,
    content: str,
    asker: Asker,
    parent_id: Any = AT_LEAF,
    *,
    attachment_ids: Sequence[str] = (),
) -> Posted:
    with transaction.atomic():
        conversation, transcript = _lock_for_answer(answered)
        if parent_id is AT_LEAF:
            parent_id = conversation.current_leaf_id
        elif parent_id is not None:
            parent_id = _answer_in(transcript, parent_id)
        question, answer = _ask(conversation, parent_id, content)
        # Attachments: claimed in this transaction, or the message is not posted.
        claimed = attachments.claim(conversation.owner, question, attachment_ids)
        transcript.add(question, files=bool(claimed))
        if not conversation.title:
            conversation.title = shortened(content)
        return question, _start_answer(conversation, transcript, answer, asker, regenerated=False)


def _answer_again(
    answered: Answered, content: str | None, question_id: Any, asker: Asker
) -> Posted:
    with transaction.atomic():
        conversation, transcript = _lock_for_answer(answered)
        if question_id is None:
            question = _last_question(conversation)
        else:
            question = _message_of(conversation, question_id, Message.Role.USER)
        if content is None:
            answer = _answer_to(conversation, question)
            answer.save(force_insert=True)
        else:
            edited, answer = _ask(conversation, question.parent_id, content)
            carried = attachments.carry_over(question, edited)
            transcript.add(edited, files=bool(carried))
            question = edited
        return question, _start_answer(conversation, transcript, answer, asker, regenerated=True)


def _answer_continue(answered: Answered, asker: Asker) -> Posted:
    with transaction.atomic():
        conversation, transcript = _lock_for_answer(answered)
        answer = _leaf(conversation)
        if answer is None or not can_continue(answer):
            raise refusals.nothing_to_continue()
        assert answer.parent is not None  # an answer always follows a question
        return answer.parent, _admitted(conversation, _continue_answer, transcript, answer, asker)


def _branch_switch(answered: Answered, message_id: Any) -> None:
    with transaction.atomic():
        conversation = _lock_idle(answered)
        leaf = leaf_after_switch(Tree(conversation.messages.all()), _parse_id(message_id))
        if leaf is None:
            raise refusals.no_such_message()
        conversation.current_leaf = leaf
        conversation.save(update_fields=["current_leaf"])


def can_continue(message: Message) -> bool:
    """Tell whether an answer may be continued: one with text that was cut off at the
    length limit, stopped, or broken off by a failure."""
    if message.role != Message.Role.ASSISTANT or not message.content:
        return False
    cut_off = message.status == Message.Status.COMPLETE and message.finish_reason == "length"
    return cut_off or message.status in (Message.Status.CANCELLED, Message.Status.ERROR)


def _leaf(conversation: Conversation) -> Message | None:
    """Return the last message on screen (every write of a message moves it there)."""
    if conversation.current_leaf_id is None:
        return None
    return Message.objects.filter(pk=conversation.current_leaf_id).first()


def _last_question(conversation: Conversation) -> Message:
    leaf = _leaf(conversation)
    question = leaf.parent if leaf is not None and leaf.role == Message.Role.ASSISTANT else leaf
    if question is None:
        raise refusals.nothing_to_answer()
    return question


def _message_of(conversation: Conversation, message_id: Any, role: str) -> Message:
    found = conversation.messages.filter(pk=_parse_id(message_id), role=role).first()
    if found is None:
        raise refusals.no_such_message(role)
    return found


def _answer_in(transcript: Transcript, message_id: Any) -> Any:
    """Return the id of the conversation's answer `message_id`, or refuse."""
    pk = _parse_id(message_id)
    if not transcript.has(pk, Message.Role.ASSISTANT):
        raise refusals.no_such_message(Message.Role.ASSISTANT)
    return pk


def _parse_id(message_id: Any) -> Any:
    try:
        return uuid.UUID(str(message_id))
    except ValueError:
        raise refusals.no_such_message() from None


def _ask(conversation: Conversation, parent_id: Any, content: str) -> tuple[Message, Message]:
    """Write a question and the empty answer to it, in one statement."""
    question = Message(
        conversation=conversation, parent_id=parent_id, role=Message.Role.USER, content=content
    )
    answer = _answer_to(conversation, question)
    Message.objects.bulk_create([question, answer])
    return question, answer


def _answer_to(conversation: Conversation, question: Message) -> Message:
    return Message(
        conversation=conversation,
        parent=question,
        role=Message.Role.ASSISTANT,
        status=Message.Status.STREAMING,
    )


def _lock_for_answer(answered: Answered) -> tuple[Conversation, Transcript]:
    """Lock the owner's conversation and read its messages, refusing while an answer
    streams or when its model is no longer offered."""
    conversation = _locked(answered)
    transcript = Transcript(conversation)
    if transcript.streaming:
        raise refusals.busy()
    if conversation.model not in settings.CHAT_MODELS:
        raise refusals.model_withdrawn(conversation.model)
    return conversation, transcript


def _lock_idle(answered: Answered) -> Conversation:
    """Lock the owner's conversation, refusing while an answer streams."""
    conversation = _locked(answered)
    if conversation.messages.filter(status=Message.Status.STREAMING).exists():
        raise refusals.busy()
    return conversation


def _locked(answered: Answered) -> Conversation:
    """Lock the owner's conversation, or refuse with 404."""
    # The row lock serialises two posts to one conversation (PostgreSQL); SQLite's
    # IMMEDIATE transactions serialise them already.
    owner = _owner_read(answered)
    mine = Conversation.objects.select_for_update()
    if owner is None:
        mine = mine.select_related("owner")
    conversation = mine.filter(pk=answered.pk, owner_id=answered.owner_id).first()
    if conversation is None:
        raise refusals.no_such_conversation()
    if owner is not None:
        conversation.owner = owner
    return conversation


def _owner_read(answered: Answered) -> Any:
    """Return the owner already read with the request (its user), or None: then the
    conversation is read with its owner (the limits need the user)."""
    if isinstance(answered, Owned):
        return answered.owner
    return answered.owner if Conversation.owner.is_cached(answered) else None


def _start_answer(
    conversation: Conversation,
    transcript: Transcript,
    answer: Message,
    asker: Asker,
    *,
    regenerated: bool,
) -> Generation:
    """Create the generation of the empty `answer`, within the user's limits."""
    return _admitted(
        conversation, _create_generation, transcript, answer, asker, regenerated=regenerated
    )


def _admitted[**P](
    conversation: Conversation,
    create: Callable[Concatenate[Conversation, P], Generation],
    *args: P.args,
    **kwargs: P.kwargs,
) -> Generation:
    """Create a generation within the user's limits: its streaming slot is taken first,
    and given back if it is not made."""
    limits.admit(conversation.owner)
    try:
        return create(conversation, *args, **kwargs)
    except BaseException:
        limits.release(conversation.owner_id)
        raise


def _create_generation(
    conversation: Conversation,
    transcript: Transcript,
    answer: Message,
    asker: Asker,
    *,
    regenerated: bool,
) -> Generation:
    conversation.current_leaf = answer
    conversation.save(update_fields=["title", "current_leaf", "updated_at"])
    return Generation.objects.create(
        message=answer,
        conversation=conversation,
        model=conversation.model,
        request=transcript.request(answer.parent_id),
        regenerated=regenerated,
        request_id=asker.request_id,
        api_key=asker.api_key,
        process=this_process(),
    )


def _continue_answer(
    conversation: Conversation, transcript: Transcript, answer: Message, asker: Asker
) -> Generation:
    """Reopen the answer with a generation that starts from its stored events.

    The new generation's events begin with the old one's, so its stream, replayed from
    the start, is the whole answer; the old generation goes (its usage row stays).
    """
    previous = Generation.objects.filter(message=answer).first()
    if previous is None:  # nothing says how its events went: it cannot be rebuilt
        raise refusals.nothing_to_continue()
    # Read while the old generation was there: its layout gives the answer's tool rounds.
    request = transcript.request(answer.pk)
    request["messages"].append({"role": "user", "content": turns.CONTINUE_PROMPT})
    layout = previous.event_layout
    previous.delete()
    answer.status = Message.Status.STREAMING
    answer.finish_reason = answer.error_code = answer.error_message = ""
    answer.save()
    conversation.save(update_fields=["updated_at"])
    return Generation.objects.create(
        message=answer,
        conversation=conversation,
        model=conversation.model,
        request=request,
        event_layout=layout,
        continued_from=len(layout),
        regenerated=True,
        request_id=asker.request_id,
        api_key=asker.api_key,
        process=this_process(),
    )


def this_process() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"
