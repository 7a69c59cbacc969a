"""Conversations and messages: the writes the views ask for, each in one transaction."""

import os
import socket
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import transaction

from chat.models import Conversation, Generation, Message

TITLE_LENGTH = 60


class ConversationBusy(Exception):
    """The conversation's previous answer is still streaming."""


async def conversation_create(
    *, owner: Any, title: str = "", model: str = "", system_prompt: str = ""
) -> Conversation:
    return await Conversation.objects.acreate(
        owner=owner,
        title=title,
        model=model or settings.CHAT_MODEL,
        system_prompt=system_prompt,
    )


async def message_post(
    *, conversation: Conversation, content: str, request_id: str = ""
) -> tuple[Message, Generation]:
    """Save the user's message, an empty answer, and the request that will fill it."""
    return await sync_to_async(_message_post)(conversation.pk, content, request_id)


def _message_post(
    conversation_id: Any, content: str, request_id: str
) -> tuple[Message, Generation]:
    with transaction.atomic():
        # The row lock serialises two posts to one conversation (PostgreSQL); SQLite's
        # IMMEDIATE transactions serialise them already.
        conversation = Conversation.objects.select_for_update().get(pk=conversation_id)
        if conversation.messages.filter(status=Message.Status.STREAMING).exists():
            raise ConversationBusy
        question = Message.objects.create(
            conversation=conversation, role=Message.Role.USER, content=content
        )
        answer = Message.objects.create(
            conversation=conversation,
            role=Message.Role.ASSISTANT,
            status=Message.Status.STREAMING,
        )
        if not conversation.title:
            conversation.title = _title_from(content)
        conversation.save(update_fields=["title", "updated_at"])
        generation = Generation.objects.create(
            message=answer,
            conversation=conversation,
            model=conversation.model,
            request=build_request(conversation),
            request_id=request_id,
            process=this_process(),
        )
        return question, generation


def this_process() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def build_request(conversation: Conversation) -> dict[str, Any]:
    """Return the Chat Completions body for the conversation's next answer."""
    messages = []
    if conversation.system_prompt:
        messages.append({"role": "system", "content": conversation.system_prompt})
    for role, content in conversation.messages.exclude(content="").values_list("role", "content"):
        messages.append({"role": role, "content": content})
    return {"model": conversation.model, "messages": messages}


def _title_from(content: str) -> str:
    line = " ".join(content.split())
    if len(line) <= TITLE_LENGTH:
        return line
    return line[: TITLE_LENGTH - 1].rsplit(" ", 1)[0] + "…"
