"""
Attachments over HTTP: the upload and its removal (JSON API), and the files themselves,
served only to their owner, or to anyone with an active share link whose branch holds
the message they were sent with.

A file is served with the type its content was found to be, never sniffed, in a
sandbox: even a text file full of HTML is only ever text.
"""

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFilesSent
from django.db.models.fields.files import FieldFile
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_safe

from chat import attachments, db, shares
from chat.attachments import Rejected
from chat.models import Attachment
from chat.serialize import attachment_dict
from chat.views.decorators import AuthenticatedRequest, api_view, page_view
from chat.views.owned import owned
from chat.views.responses import BadRequest, unlisted

# Room for the multipart envelope around the file itself.
ENVELOPE_BYTES = 64 * 1024
# Uploads a user may hold unsent at once: enough for a few messages in the making.
MAX_UNSENT = 50


@api_view("POST")
async def upload(request: AuthenticatedRequest) -> HttpResponseBase:
    """Check an uploaded file by its bytes and keep it for the user's next message."""
    name, data = await sync_to_async(_uploaded, thread_sensitive=False)(request)
    if await db.run(Attachment.objects.owned_by(request.user).unsent().count) >= MAX_UNSENT:
        raise Rejected(
            429, "too_many_uploads", "Send or remove the files you attached before adding more."
        )
    checked = await sync_to_async(attachments.check, thread_sensitive=False)(data)
    stored = await db.write(attachments.store, request.user, name, data, checked)
    return JsonResponse(attachment_dict(stored), status=201)


def _uploaded(request: HttpRequest) -> tuple[str, bytes]:
    """Return the name and bytes of the request's `file` field, or raise."""
    declared = request.headers.get("Content-Length", "")
    limit = settings.CHAT_ATTACHMENT_MAX_BYTES
    if declared.isdigit() and int(declared) > limit + ENVELOPE_BYTES:
        raise attachments.too_big()
    try:
        sent = request.FILES.get("file")
    except (MultiPartParserError, RequestDataTooBig, TooManyFilesSent):
        raise BadRequest("invalid_upload", "The body is not a valid multipart upload.") from None
    if sent is None:
        raise BadRequest("missing_file", "Send the file as the multipart/form-data field 'file'.")
    if sent.size is None or sent.size > limit:
        raise attachments.too_big()
    return sent.name or "", sent.read()


@api_view("DELETE")
async def attachment(request: AuthenticatedRequest, pk: str) -> HttpResponseBase:
    """Remove an upload not yet sent (a sent one belongs to its message)."""
    found = await owned(Attachment.objects.owned_by(request.user).unsent(), pk, "attachment")
    # Only while it is unsent: a message posted meanwhile keeps it.
    if not await db.write(attachments.discard_unsent, request.user, [found.pk]):
        raise Http404("No such attachment.")
    return HttpResponse(status=204)


@page_view("GET", "HEAD")
async def attachment_file(request: AuthenticatedRequest, pk: str) -> HttpResponse:
    found = await owned(Attachment.objects.owned_by(request.user), pk, "attachment")
    return await _served(found, thumbnail=False)


@page_view("GET", "HEAD")
async def attachment_thumbnail(request: AuthenticatedRequest, pk: str) -> HttpResponse:
    found = await owned(Attachment.objects.owned_by(request.user), pk, "attachment")
    return await _served(found, thumbnail=True)


@require_safe
async def shared_file(request: HttpRequest, token: str, pk: str) -> HttpResponse:
    return unlisted(await _served(await _shared(token, pk), thumbnail=False))


@require_safe
async def shared_thumbnail(request: HttpRequest, token: str, pk: str) -> HttpResponse:
    return unlisted(await _served(await _shared(token, pk), thumbnail=True))


async def _shared(token: str, pk: str) -> Attachment:
    """Return the attachment if an active share link shows its message, or raise 404."""
    link = await db.run(shares.find, token)
    if link is None:
        raise Http404("No such share link.")
    shown = [message.pk for message in await db.run(shares.branch, link)]
    return await owned(Attachment.objects.filter(message__in=shown), pk, "attachment")


async def _served(found: Attachment, *, thumbnail: bool) -> HttpResponse:
    field = found.thumbnail if thumbnail else found.file
    if not field.name:
        raise Http404("This file has no thumbnail.")
    try:
        data = await sync_to_async(_read, thread_sensitive=False)(field)
    except OSError:
        raise Http404("This file is gone.") from None
    image = thumbnail or found.kind == Attachment.Kind.IMAGE
    content_type = "image/webp" if thumbnail else found.content_type
    if content_type.startswith("text/"):
        content_type += "; charset=utf-8"
    response = HttpResponse(data, content_type=content_type)
    response["Content-Disposition"] = content_disposition_header(not image, found.name) or ""
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Cross-Origin-Resource-Policy"] = "same-origin"
    response["Cache-Control"] = "private, max-age=3600"
    return response


def _read(field: FieldFile) -> bytes:
    with field.open("rb") as opened:
        data: bytes = opened.read()
    return data
