"""The attachments of a message in templates, and their URLs: the owner's, or a share link's."""

from django import template
from django.conf import settings
from django.urls import reverse

from chat.attachments import size_text
from chat.models import Attachment, Message
from chat.serialize import attachments_of

register = template.Library()


@register.filter
def attachments(message: Message) -> list[Attachment]:
    """The message's attachments (prefetched, or just claimed): never a query here."""
    return attachments_of(message)


@register.filter
def file_size(size: int) -> str:
    return size_text(size)


@register.simple_tag
def attachment_url(attachment: Attachment, share_token: str = "") -> str:
    """The file's URL: its owner's, or with a share link's token, the share's."""
    if share_token:
        return reverse("chat:shared-attachment", args=[share_token, attachment.pk])
    return reverse("chat:attachment", args=[attachment.pk])


@register.simple_tag
def attachment_thumbnail_url(attachment: Attachment, share_token: str = "") -> str:
    if share_token:
        return reverse("chat:shared-attachment-thumbnail", args=[share_token, attachment.pk])
    return reverse("chat:attachment-thumbnail", args=[attachment.pk])


@register.simple_tag
def max_attachments() -> int:
    return int(settings.CHAT_ATTACHMENTS_PER_MESSAGE)


@register.simple_tag
def max_attachment_bytes() -> int:
    return int(settings.CHAT_ATTACHMENT_MAX_BYTES)
