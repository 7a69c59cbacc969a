"""
A conversation's messages as rows, read once by the write that starts an answer.

That write needs the whole conversation anyway, to build the request to the model; read
under the conversation's lock and first, the same rows also say whether an answer is
streaming and which messages there are, so a post asks the database nothing else before
its inserts (each statement fewer is a shorter turn for SQLite's one writer).
"""

from typing import Any

from django.conf import settings

from chat import attachment_prompt, context, tools, turns
from chat.branches import path_to
from chat.models import Conversation, Message

# A message's row: what the request needs of it, and whether it is still streaming.
_FIELDS = ("pk", "parent_id", "role", "status", "content", "tool_calls", "generation__event_layout")
_PARENT, _ROLE, _STATUS = (_FIELDS.index(name) for name in ("parent_id", "role", "status"))


class Transcript:
    """The messages of a conversation, every branch, as they stood when it was read, and
    the question written since (`add`)."""

    def __init__(self, conversation: Conversation) -> None:
        self.conversation = conversation
        # Whether a message has files rides along, joined: most conversations need no
        # second query. A message comes once per file (at most CHAT_ATTACHMENTS_PER_MESSAGE
        # times, its text with it); the join costs far less CPU than an EXISTS subquery.
        rows = conversation.messages.values_list(*_FIELDS, "attachments__pk")
        self._rows: dict[Any, tuple[Any, ...]] = {row[0]: row[:-1] for row in rows}
        self._with_files = {row[0] for row in rows if row[-1] is not None}

    @property
    def streaming(self) -> bool:
        """Tell whether one of the messages is an answer still being written."""
        return any(row[_STATUS] == Message.Status.STREAMING for row in self._rows.values())

    def has(self, pk: Any, role: str) -> bool:
        row = self._rows.get(pk)
        return row is not None and row[_ROLE] == role

    def add(self, message: Message, *, files: bool) -> None:
        """Count a message written after the read: a question just asked."""
        self._rows[message.pk] = (
            message.pk,
            message.parent_id,
            message.role,
            message.status,
            message.content,
            message.tool_calls,
            None,
        )
        if files:
            self._with_files.add(message.pk)

    def request(self, last: Any) -> dict[str, Any]:
        """Return the Chat Completions body for an answer after message `last`, along its
        branch.

        The oldest messages are left out when the whole conversation would not fit
        CHAT_CONTEXT_TOKENS; the system prompt and the newest message always go. Answers
        that called tools go with their calls and results; their reasoning never goes.
        """
        conversation = self.conversation
        messages: list[dict[str, Any]] = []
        if conversation.system_prompt:
            messages.append({"role": "system", "content": conversation.system_prompt})
        # What a message's files may fill: the context the system prompt leaves.
        room = (
            settings.CHAT_CONTEXT_TOKENS - context.message_tokens(messages, conversation.model)[0]
        )
        parents = {pk: row[_PARENT] for pk, row in self._rows.items()}
        path = path_to(last, parents)
        branch = [self._rows[pk] for pk in path]
        files = not self._with_files.isdisjoint(path)
        attached = attachment_prompt.of_conversation(conversation) if files else {}
        for pk, _, role, _, content, tool_calls, layout in branch:
            if role == Message.Role.ASSISTANT:
                messages += turns.answer_messages(content, tool_calls, layout or [])
            elif pk in attached:
                # Attachments: their text trimmed to the room, images as parts (or named).
                budget = room - context.MESSAGE_OVERHEAD
                upstream = attachment_prompt.content(
                    content, attached[pk], conversation.model, budget
                )
                messages.append({"role": role, "content": upstream})
            elif content:
                messages.append({"role": role, "content": content})
        if not tools.offered_to(conversation.model):
            messages = turns.flattened(messages)
        fitting = context.fit(messages, conversation.model, settings.CHAT_CONTEXT_TOKENS)
        return {"model": conversation.model, "messages": fitting}
