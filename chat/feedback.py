"""
Feedback on an answer: thumbs up or down, and an optional comment saying why.

Only a finished answer of the assistant's can be rated; the check is made on the row
locked in the write, so an answer that starts streaming again (continued) in between is
refused, not rated half-written.
"""

from typing import Any

from django.db import transaction

from chat.models import Feedback, Message
from chat.refusals import Refused

MAX_COMMENT_CHARS = 2000
RATINGS = tuple(Feedback.Rating.values)


def not_an_answer() -> Refused:
    return Refused(400, "not_an_answer", "Only the assistant's answers take feedback.")


def answer_streaming() -> Refused:
    return Refused(409, "answer_streaming", "Wait for the answer to finish, then rate it.")


def rate(message_id: Any, rating: str, comment: str) -> Feedback:
    """Set the answer's rating and comment, replacing any given before."""
    with transaction.atomic():
        _rateable(message_id)
        found, _ = Feedback.objects.update_or_create(
            message_id=message_id, defaults={"rating": rating, "comment": comment}
        )
        return found


def toggle(message_id: Any, rating: str) -> Feedback | None:
    """A thumb clicked: the same rating again takes the feedback back (as ChatGPT's do);
    the other one replaces it, and the comment given for the old rating goes with it."""
    with transaction.atomic():
        _rateable(message_id)
        current = Feedback.objects.filter(message_id=message_id).first()
        if current is not None and current.rating == rating:
            current.delete()
            return None
        found, _ = Feedback.objects.update_or_create(
            message_id=message_id, defaults={"rating": rating, "comment": ""}
        )
        return found


def clear(message_id: Any) -> None:
    Feedback.objects.filter(message_id=message_id).delete()


def of(message: Message) -> Feedback | None:
    """The answer's feedback, if any (loaded with select_related("feedback"))."""
    try:
        return message.feedback
    except Feedback.DoesNotExist:
        return None


def _rateable(message_id: Any) -> None:
    message = Message.objects.select_for_update().get(pk=message_id)
    if message.role != Message.Role.ASSISTANT:
        raise not_an_answer()
    if message.is_streaming:
        raise answer_streaming()
