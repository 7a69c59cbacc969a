"""The sidebar's list of conversations: searched, and grouped by day as the user sees days."""

import datetime
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from chat.models import Conversation, Message

# How many conversations the sidebar lists.
SIDEBAR_LENGTH = 100
# Longest search accepted; longer queries are cut.
QUERY_LENGTH = 200

GROUPS = ("Today", "Yesterday", "Previous 7 days", "Older")


@dataclass
class Group:
    label: str
    conversations: list[Conversation] = field(default_factory=list)


def _now() -> datetime.datetime:
    return timezone.now()


def clean_query(raw: str | None) -> str:
    return " ".join((raw or "").split())[:QUERY_LENGTH]


async def conversation_groups(user: Any, query: str = "") -> list[Group]:
    """Return the user's conversations, newest first, in non-empty day groups.

    With a query, only conversations whose title or any message contains it (any case).
    Note: this is one query; the message match is an EXISTS, so no duplicates.
    """
    found = Conversation.objects.owned_by(user).only("id", "title", "updated_at")
    if query:
        in_messages = Message.objects.filter(conversation=OuterRef("pk"), content__icontains=query)
        found = found.filter(Q(title__icontains=query) | Exists(in_messages))
    conversations = [conversation async for conversation in found[:SIDEBAR_LENGTH]]
    return grouped(conversations, _now())


def grouped(conversations: list[Conversation], now: datetime.datetime) -> list[Group]:
    """Put conversations (newest first) under Today, Yesterday, Previous 7 days, Older."""
    today = timezone.localtime(now).date()
    groups = {label: Group(label) for label in GROUPS}
    for conversation in conversations:
        day = timezone.localtime(conversation.updated_at).date()
        age = (today - day).days
        if age <= 0:
            label = "Today"
        elif age == 1:
            label = "Yesterday"
        elif age <= 7:
            label = "Previous 7 days"
        else:
            label = "Older"
        groups[label].conversations.append(conversation)
    return [group for group in groups.values() if group.conversations]
