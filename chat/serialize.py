"""The JSON shapes of the API, built from model instances."""

from typing import Any, NotRequired, TypedDict

from django.urls import reverse

from chat import feedback
from chat.models import Attachment, Conversation, Feedback, Generation, Message


class MessageDict(TypedDict):
    id: str
    parent_id: str | None
    role: str
    content: str
    reasoning: str
    tool_calls: list[dict[str, Any]]
    status: str
    finish_reason: str
    created_at: str
    attachments: list["AttachmentDict"]
    error: NotRequired[dict[str, str]]
    feedback: NotRequired["FeedbackDict"]


class FeedbackDict(TypedDict):
    rating: str
    comment: str


class AttachmentDict(TypedDict):
    id: str
    name: str
    kind: str
    content_type: str
    size: int
    width: int | None
    height: int | None
    url: str
    thumbnail_url: str | None


class ConversationDict(TypedDict):
    id: str
    title: str
    model: str
    system_prompt: str
    created_at: str
    updated_at: str
    current_leaf_id: str | None
    messages: NotRequired[list[MessageDict]]
    branch: NotRequired[list[str]]


class GenerationDict(TypedDict):
    id: str
    stream_url: str
    cancel_url: str


def conversation_dict(conversation: Conversation) -> ConversationDict:
    return {
        "id": str(conversation.pk),
        "title": conversation.title,
        "model": conversation.model,
        "system_prompt": conversation.system_prompt,
        "created_at": conversation.created_at.isoformat(),
        "updated_at": conversation.updated_at.isoformat(),
        "current_leaf_id": _id(conversation.current_leaf_id),
    }


def message_dict(message: Message) -> MessageDict:
    """The message's JSON; its feedback must be loaded with it (select_related("feedback"))."""
    data: MessageDict = {
        "id": str(message.pk),
        "parent_id": _id(message.parent_id),
        "role": message.role,
        "content": message.content,
        "reasoning": message.reasoning,
        "tool_calls": message.tool_calls,
        "status": message.status,
        "finish_reason": message.finish_reason,
        "created_at": message.created_at.isoformat(),
        "attachments": [attachment_dict(a) for a in attachments_of(message)],
    }
    if message.status == Message.Status.ERROR:
        data["error"] = {"code": message.error_code, "message": message.error_message}
    if message.role == Message.Role.ASSISTANT and (given := feedback.of(message)) is not None:
        data["feedback"] = feedback_dict(given)
    return data


def _id(pk: Any) -> str | None:
    return None if pk is None else str(pk)


def feedback_dict(given: Feedback) -> FeedbackDict:
    return {"rating": given.rating, "comment": given.comment}


def generation_dict(generation: Generation, stream_url: str) -> GenerationDict:
    return {
        "id": str(generation.pk),
        "stream_url": stream_url,
        "cancel_url": generation.get_cancel_url(),
    }


def attachments_of(message: Message) -> list[Attachment]:
    """Return the message's attachments: prefetched (prefetch_related("attachments")),
    or given to it by whoever claimed them; a message with neither has none."""
    cache = getattr(message, "_prefetched_objects_cache", {})
    if "attachments" in cache:
        return list(cache["attachments"])
    return list(getattr(message, "sent_attachments", []))


def attachment_dict(attachment: Attachment) -> AttachmentDict:
    return {
        "id": str(attachment.pk),
        "name": attachment.name,
        "kind": attachment.kind,
        "content_type": attachment.content_type,
        "size": attachment.size,
        "width": attachment.width,
        "height": attachment.height,
        "url": reverse("chat:attachment", args=[attachment.pk]),
        "thumbnail_url": reverse("chat:attachment-thumbnail", args=[attachment.pk])
        if attachment.thumbnail
        else None,
    }
