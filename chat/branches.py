"""
A conversation's messages form a tree: each follows its `parent`, and messages with the
same parent are versions of one turn (a regenerated answer, an edited question). The
conversation shows one branch, from a first message down to its `current_leaf`; the page,
the exports, the share links and the context sent to the model all follow that branch.
"""

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet

from chat import db
from chat.models import Conversation, Message


@dataclass(frozen=True, slots=True)
class Versions:
    """Where a message stands among the versions of its turn: "2/3"."""

    number: int
    count: int
    previous_id: Any
    next_id: Any


class Tree:
    """A conversation's messages, loaded once, walked in memory."""

    def __init__(self, messages: Iterable[Message]) -> None:
        self.messages = sorted(messages, key=lambda m: (m.created_at, str(m.pk)))
        self.by_id: dict[Any, Message] = {message.pk: message for message in self.messages}
        self.children: dict[Any, list[Message]] = defaultdict(list)
        for message in self.messages:
            self.children[message.parent_id].append(message)

    @classmethod
    async def of(cls, conversation: Conversation) -> "Tree":
        found = history(conversation).select_related("feedback").prefetch_related("attachments")
        return cls(await db.run(list, found))

    def branch(self, leaf_id: Any) -> list[Message]:
        """Return the messages from the first down to `leaf_id`; unknown: the newest branch."""
        if leaf_id not in self.by_id:
            newest = self.newest_leaf(None)
            leaf_id = newest.pk if newest else None
        parents = {message.pk: message.parent_id for message in self.messages}
        return [self.by_id[pk] for pk in path_to(leaf_id, parents)]

    def current(self, conversation: Conversation) -> list[Message]:
        return self.branch(conversation.current_leaf_id)

    def newest_leaf(self, start: Message | None) -> Message | None:
        """Return the leaf reached from `start` (None: the root) by the newest child each time."""
        message = start
        while self.children.get(message.pk if message else None):
            message = self.children[message.pk if message else None][-1]
        return message

    def versions(self, message: Message) -> Versions | None:
        """Return the message's place among its siblings; None when it has none."""
        siblings = self.children[message.parent_id]
        if len(siblings) < 2:
            return None
        index = siblings.index(message)
        previous = siblings[index - 1].pk if index > 0 else None
        following = siblings[index + 1].pk if index + 1 < len(siblings) else None
        return Versions(index + 1, len(siblings), previous, following)


def path_to(leaf_id: Any, parents: Mapping[Any, Any]) -> list[Any]:
    """Return the ids from the first message down to `leaf_id`, given each one's parent."""
    path = []
    while leaf_id in parents:
        path.append(leaf_id)
        leaf_id = parents[leaf_id]
    return path[::-1]


def history(conversation: Conversation) -> "QuerySet[Message]":
    """The conversation's messages with how each answer was streamed; not the requests
    sent for them, which hold the whole context each."""
    return conversation.messages.select_related("generation").defer("generation__request")


def leaf_after_switch(tree: Tree, message_id: Any) -> Message | None:
    """Return the leaf to show once the user picks this message: its newest descendant."""
    chosen = tree.by_id.get(message_id)
    return tree.newest_leaf(chosen) if chosen is not None else None
