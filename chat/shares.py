"""
Share links: a read-only copy of a conversation's branch, up to the message that was on
screen last, for anyone who has the URL.

The token is the only secret: 32 random bytes (`secrets.token_urlsafe`), looked up by a
unique index, so no guess comes closer than another. A link shows what is stored at the
moment it is opened, up to its leaf; revoking it marks it, and the public page looks
only at links not revoked, so the next request already gets a 404.
"""

import secrets
from typing import Any

from django.db import transaction
from django.utils import timezone

from chat.branches import Tree, history
from chat.models import Conversation, Message, ShareLink
from chat.refusals import Refused

TOKEN_BYTES = 32
# token_urlsafe(32) is 43 characters; anything else is no token of ours.
TOKEN_CHARS = 43


def nothing_to_share() -> Refused:
    return Refused(409, "nothing_to_share", "This conversation has no message to share yet.")


def still_streaming() -> Refused:
    return Refused(
        409, "answer_streaming", "Wait for the answer to finish (or stop it), then share."
    )


def create(conversation_id: Any) -> ShareLink:
    """Share the branch on screen, up to its last message; raise Refused if there is none,
    or while its last answer is still being written (a link shows finished answers)."""
    with transaction.atomic():
        conversation = Conversation.objects.select_for_update().get(pk=conversation_id)
        leaf = conversation.current_leaf  # every message written moves the leaf there
        if leaf is None:
            raise nothing_to_share()
        if leaf.is_streaming:
            raise still_streaming()
        return ShareLink.objects.create(
            conversation=conversation, leaf=leaf, token=secrets.token_urlsafe(TOKEN_BYTES)
        )


def revoke(link: ShareLink) -> None:
    ShareLink.objects.filter(pk=link.pk, revoked_at=None).update(revoked_at=timezone.now())


def find(token: str) -> ShareLink | None:
    """Return the active link with this token, its conversation loaded; None otherwise."""
    if len(token) != TOKEN_CHARS:
        return None
    active = ShareLink.objects.active().select_related("conversation")
    return active.filter(token=token).first()


def branch(link: ShareLink) -> list[Message]:
    """The messages the link shows: from the first down to its leaf, nothing later."""
    messages = history(link.conversation).prefetch_related("attachments")
    return Tree(messages).branch(link.leaf_id)
