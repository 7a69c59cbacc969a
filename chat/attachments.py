"""
Attachments: a file is checked by its bytes, never by its name, then stored through
Django's storage API; a message claims the user's unsent uploads when it is posted.

An image is a PNG, JPEG, WebP or GIF that Pillow opens, verifies and decodes within
CHAT_ATTACHMENT_MAX_PIXELS; a PDF is one pypdf reads, unencrypted, whose text is taken
from at most CHAT_ATTACHMENT_PDF_PAGES pages; anything else is text only if it is UTF-8
(a BOM allowed) without NUL bytes. A refused file stores nothing: no row, no file.
"""

import contextlib
import io
import logging
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID

import pypdf
from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import Q
from django.db.models.signals import post_delete
from django.dispatch import receiver
from django.utils import timezone
from PIL import Image, UnidentifiedImageError

from chat.models import Attachment, Message
from chat.refusals import Refused

logger = logging.getLogger(__name__)

THUMBNAIL_SIDE = 320
UNSENT_FOR = timedelta(days=1)
MAX_NAME_CHARS = 255
PIL_FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP", "image/gif": "GIF"}
SIGNATURES = [
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"%PDF-", "application/pdf"),
]
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class Rejected(Refused):
    """A file that is not stored, and why: a code and a message for its uploader."""


def too_big() -> Rejected:
    limit = settings.CHAT_ATTACHMENT_MAX_BYTES
    return Rejected(413, "file_too_large", f"This file is larger than {size_text(limit)}.")


@dataclass(frozen=True, slots=True)
class Checked:
    """What a file's bytes turned out to be."""

    kind: str
    content_type: str
    text: str = ""
    width: int | None = None
    height: int | None = None
    thumbnail: bytes | None = None


def check(data: bytes) -> Checked:
    """Return what the bytes are, or raise Rejected: the name plays no part."""
    if len(data) > settings.CHAT_ATTACHMENT_MAX_BYTES:
        raise too_big()
    if not data:
        raise Rejected(400, "empty_file", "This file is empty.")
    content_type = sniffed(data)
    if content_type in PIL_FORMATS:
        return _image(data, content_type)
    if content_type == "application/pdf":
        return _pdf(data)
    return _text(data)


def sniffed(data: bytes) -> str | None:
    """Return the content type the file's first bytes announce, if one we know."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return next((kind for magic, kind in SIGNATURES if data.startswith(magic)), None)


def _image(data: bytes, content_type: str) -> Checked:
    formats = [PIL_FORMATS[content_type]]
    corrupt = Rejected(400, "corrupt_image", "This image is damaged or not what it claims to be.")
    try:
        with Image.open(io.BytesIO(data), formats=formats) as probe:
            width, height = probe.size
            # Before anything is decoded: a small file can declare a huge image.
            if width * height > settings.CHAT_ATTACHMENT_MAX_PIXELS:
                raise _too_many_pixels()
            probe.verify()
        with Image.open(io.BytesIO(data), formats=formats) as image:
            image.draft("RGB", (THUMBNAIL_SIDE, THUMBNAIL_SIDE))
            image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
            small = image.convert("RGBA" if _has_alpha(image) else "RGB")
            thumbnail = io.BytesIO()
            small.save(thumbnail, "WEBP", quality=80)
    except Image.DecompressionBombError:
        raise _too_many_pixels() from None
    except (OSError, SyntaxError, ValueError, EOFError, UnidentifiedImageError):
        # What Pillow raises for a truncated, malformed or mislabelled file.
        raise corrupt from None
    return Checked("image", content_type, "", width, height, thumbnail.getvalue())


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info


def _too_many_pixels() -> Rejected:
    limit = settings.CHAT_ATTACHMENT_MAX_PIXELS
    return Rejected(400, "image_too_large", f"This image has more than {limit:,} pixels.")


def _pdf(data: bytes) -> Checked:
    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise Rejected(
                400, "encrypted_pdf", "This PDF is password-protected: it cannot be read."
            )
        text = _pdf_text(reader)
    except Rejected:
        raise
    except RecursionError:
        raise Rejected(400, "corrupt_pdf", "This PDF is damaged or cannot be read.") from None
    except Exception:
        # pypdf raises more than its own PyPdfError on malformed input (KeyError,
        # ValueError, zlib.error...); whatever it raises, the file is unreadable.
        logger.info("a PDF could not be read", exc_info=True)
        raise Rejected(400, "corrupt_pdf", "This PDF is damaged or cannot be read.") from None
    return Checked("pdf", "application/pdf", text)


def _pdf_text(reader: pypdf.PdfReader) -> str:
    limit = settings.CHAT_ATTACHMENT_TEXT_CHARS
    pages = settings.CHAT_ATTACHMENT_PDF_PAGES
    parts: list[str] = []
    total = 0
    for number, page in enumerate(reader.pages):
        if number >= pages:
            parts.append(f"[Only the first {pages} pages were read.]")
            break
        text = page.extract_text() or ""
        parts.append(text)
        total += len(text)
        if total >= limit:
            break
    return _capped("\n\n".join(parts).replace("\x00", ""))


def _text(data: bytes) -> Checked:
    unsupported = Rejected(
        415,
        "unsupported_type",
        "Only images (PNG, JPEG, WebP, GIF), PDFs and UTF-8 text files can be attached.",
    )
    if b"\x00" in data:
        raise unsupported
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise unsupported from None
    return Checked("text", "text/plain", _capped(text))


def _capped(text: str) -> str:
    limit = settings.CHAT_ATTACHMENT_TEXT_CHARS
    return text if len(text) <= limit else text[:limit]


def clean_name(name: str) -> str:
    """Return the name to show: the last part of a path, without control characters."""
    base = re.split(r"[\\/]", name)[-1]
    base = CONTROL.sub("", unicodedata.normalize("NFC", base)).strip()
    return base[-MAX_NAME_CHARS:] or "file"


def store(owner: Any, name: str, data: bytes, checked: Checked) -> Attachment:
    """Save the file and its row; on any failure, neither stays."""
    attachment = Attachment(
        owner=owner,
        kind=checked.kind,
        name=clean_name(name),
        content_type=checked.content_type,
        size=len(data),
        width=checked.width,
        height=checked.height,
        text=checked.text,
    )
    try:
        attachment.file.save("upload", ContentFile(data), save=False)
        if checked.thumbnail is not None:
            attachment.thumbnail.save("thumbnail", ContentFile(checked.thumbnail), save=False)
        attachment.save(force_insert=True)
    except BaseException:
        _delete_files(attachment)
        raise
    return attachment


def check_all(
    files: Sequence[tuple[str, bytes]], already: int = 0
) -> list[tuple[str, bytes, Checked]]:
    """Check files sent together (`already`: how many more the message has) before any
    is stored: too many, or one bad file, refuses them all."""
    limit = settings.CHAT_ATTACHMENTS_PER_MESSAGE
    if already + len(files) > limit:
        raise Rejected(400, "too_many_attachments", f"At most {limit} files per message.")
    return [(name, data, check(data)) for name, data in files]


def store_all(owner: Any, files: Sequence[tuple[str, bytes, Checked]]) -> list[Attachment]:
    """Store checked files together: all of them, or (on any failure) none."""
    stored: list[Attachment] = []
    try:
        with transaction.atomic():
            for name, data, checked in files:
                stored.append(store(owner, name, data, checked))
    except BaseException:
        for attachment in stored:  # their rows are rolled back: the files go too
            _delete_files(attachment)
        raise
    return stored


def discard_unsent(owner: Any, ids: Sequence[Any]) -> int:
    """Delete these uploads of the owner's unless a message has them now; return how many."""
    unsent = Attachment.objects.owned_by(owner).unsent().filter(pk__in=ids)
    deleted = 0
    with transaction.atomic():
        for attachment in unsent.select_for_update():
            attachment.delete()
            deleted += 1
    return deleted


@receiver(post_delete, sender=Attachment)
def _files_go_with_the_row(sender: Any, instance: Attachment, **kwargs: Any) -> None:
    # After the commit: a rolled-back delete keeps its files.
    transaction.on_commit(lambda: _delete_files(instance))


def _delete_files(attachment: Attachment) -> None:
    for field in (attachment.file, attachment.thumbnail):
        if field.name and not _still_used(field.name):
            with contextlib.suppress(OSError):
                field.storage.delete(field.name)


def _still_used(name: str) -> bool:
    """Whether another row still shows this file (an edited question's carried over)."""
    return Attachment.objects.filter(Q(file=name) | Q(thumbnail=name)).exists()


def carry_over(source: Message, edited: Message) -> list[Attachment]:
    """Send the files of a question with its edited version too: new rows, the same files."""
    carried = list(source.attachments.all())
    for attachment in carried:
        attachment.pk = None  # a new row, with a new id
        attachment.message = edited
        attachment.save(force_insert=True)
    return carried


def claim(owner: Any, message: Message, ids: Sequence[Any]) -> list[Attachment]:
    """Attach the owner's unsent uploads `ids` to the message, in the caller's transaction.

    Raises Rejected (nothing claimed) for too many, an unknown or another user's id, one
    already sent, or one named twice.
    """
    if not ids:
        return []
    limit = settings.CHAT_ATTACHMENTS_PER_MESSAGE
    if len(ids) > limit:
        raise Rejected(400, "too_many_attachments", f"At most {limit} files per message.")
    wanted = [str(pk) for pk in ids]
    if len(set(wanted)) != len(wanted):
        raise Rejected(400, "invalid_attachment", "The same file is attached twice.")
    unsent = Attachment.objects.owned_by(owner).unsent().select_for_update()
    found = {str(a.pk): a for a in unsent.filter(pk__in=[_uuid_or_none(pk) for pk in wanted])}
    if len(found) != len(wanted):
        raise Rejected(
            400, "invalid_attachment", "An attached file is unknown, or was already sent."
        )
    Attachment.objects.filter(pk__in=list(found)).update(message=message)
    claimed = [found[pk] for pk in wanted]
    for attachment in claimed:
        attachment.message = message
    # For the views that show the posted message at once (chat/serialize.py).
    message.sent_attachments = claimed  # type: ignore[attr-defined]
    return claimed


def _uuid_or_none(value: str) -> str | None:
    try:
        return str(UUID(value))
    except ValueError:
        return None


def sweep_unsent() -> int:
    """Delete uploads never sent within a day; return how many."""
    stale = Attachment.objects.unsent().filter(created_at__lt=timezone.now() - UNSENT_FOR)
    count = 0
    for attachment in stale.iterator():
        with transaction.atomic():
            attachment.delete()
        count += 1
    return count


def size_text(size: int) -> str:
    """Return a size as people read it: 512 bytes, 1.2 KB, 10 MB."""
    if size < 1024:
        return f"{size} bytes"
    value = size / 1024
    for unit in ("KB", "MB"):
        if value < 1024:
            return f"{value:.1f}".removesuffix(".0") + f" {unit}"
        value /= 1024
    return f"{value:.1f}".removesuffix(".0") + " GB"
