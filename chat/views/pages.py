"""
The chat's pages: the conversation list, one conversation, posting to it, answering
again, editing, continuing, switching versions, renaming, deleting, exporting, and one
message.

Every page works without JavaScript; with htmx the forms post in place and get back
fragments rendered from the very partials the full pages use.
"""

from collections.abc import Awaitable
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib import messages as flash
from django.http import HttpResponse, HttpResponseRedirect
from django.urls import reverse

from chat import attachments, db, export, services
from chat.branches import Tree
from chat.forms import MessageForm, NewConversationForm, RenameForm, model_label
from chat.models import Conversation, Message
from chat.refusals import Refused
from chat.render import render_markdown
from chat.services import Posted
from chat.sidebar import conversation_groups
from chat.views.decorators import AuthenticatedRequest, page_view
from chat.views.layout import is_htmx, render_page, sidebar_context
from chat.views.owned import owned


@page_view("GET", "POST")
async def home(request: AuthenticatedRequest) -> HttpResponse:
    if request.method != "POST":
        return await _home_page(request, NewConversationForm())
    form = NewConversationForm(request.POST)
    if not form.is_valid():
        return await _home_refused(request, form, status=422)
    try:
        ids, fresh = await _sent_files(request)
        started = services.conversation_start(
            owner=request.user,
            content=form.cleaned_data["content"],
            model=form.cleaned_data["model"],
            system_prompt=form.cleaned_data["system_prompt"].strip(),
            attachment_ids=ids,
        )
        _, generation = await _discarding_on_refusal(request, started, fresh)
    except Refused as refused:
        form.add_error(None, refused.message)
        return _retry_after(await _home_refused(request, form, status=refused.status), refused)
    return _redirect(request, generation.conversation.get_absolute_url())


@page_view("GET")
async def conversation(request: AuthenticatedRequest, pk: str) -> HttpResponse:
    found = await _conversation_of(request, pk)
    return await _conversation_page(request, found, MessageForm())


@page_view("POST")
async def message_create(request: AuthenticatedRequest, pk: str) -> HttpResponse:
    return await _answer_text(request, pk, edit=False)


@page_view("POST")
async def regenerate(request: AuthenticatedRequest, pk: str) -> HttpResponse:
    """Answer the last message of the user's anew (also the Retry of a failed answer)."""
    found = await _conversation_of(request, pk)
    started = services.answer_again(conversation=found)
    return await _start_answer(request, found, started, MessageForm(), whole_transcript=True)


@page_view("POST")
async def edit(request: AuthenticatedRequest, pk: str) -> HttpResponse:
    """Ask one of the user's messages (`message`; the last by default) anew, edited."""
    return await _answer_text(request, pk, edit=True)


@page_view("POST")
async def continue_answer(request: AuthenticatedRequest, pk: str) -> HttpResponse:
    """Have the last answer, cut off or stopped, go on where it stopped."""
    found = await _conversation_of(request, pk)
    started = services.answer_continue(conversation=found)
    return await _start_answer(request, found, started, MessageForm(), whole_transcript=True)


@page_view("POST")
async def switch(request: AuthenticatedRequest, pk: str) -> HttpResponse:
    """Show another version of a message (`message`), and the branch that follows it."""
    found = await _conversation_of(request, pk)
    try:
        await services.branch_switch(conversation=found, message_id=request.POST.get("message"))
    except Refused as refused:
        return await _refusal(request, found, MessageForm(), refused)
    if not is_htmx(request):
        return HttpResponseRedirect(found.get_absolute_url())
    await found.arefresh_from_db(fields=["current_leaf"])
    context = await _transcript_context(found)
    return await render_page(request, "chat/conversation.html#transcript", context)


@page_view("POST")
async def rename(request: AuthenticatedRequest, pk: str) -> HttpResponse:
    found = await _conversation_of(request, pk)
    form = RenameForm(request.POST)
    if form.is_valid():
        await services.conversation_rename(conversation=found, title=form.cleaned_data["title"])
    if is_htmx(request):
        if not form.is_valid():
            return HttpResponse(status=422)
        # The list (where the title shows) and, out of band, the page's own title.
        context = {
            "groups": await conversation_groups(request.user),
            "current_pk": _current_pk(request),
            "renamed": found,
        }
        return await render_page(request, "chat/_sidebar.html#renamed", context)
    if not form.is_valid():
        flash.error(request, "A title cannot be empty, nor longer than 200 characters.")
    return HttpResponseRedirect(found.get_absolute_url())


@page_view("GET", "POST")
async def delete(request: AuthenticatedRequest, pk: str) -> HttpResponse:
    """Ask first (GET: a confirmation page), then delete (POST), stopping a running answer."""
    found = await _conversation_of(request, pk)
    if request.method != "POST":
        context = {"conversation": found, "groups": await conversation_groups(request.user)}
        return await render_page(request, "chat/delete.html", context)
    title = str(found)
    await services.conversation_delete(conversation=found)
    flash.success(request, f"Deleted “{title}”.")
    return _redirect(request, reverse("chat:home"))


@page_view("GET")
async def export_conversation(request: AuthenticatedRequest, pk: str, fmt: str) -> HttpResponse:
    found = await _conversation_of(request, pk)
    transcript = (await Tree.of(found)).current(found)
    if fmt == "json":
        body, content_type = export.as_json(found, transcript), "application/json"
    else:
        body, content_type = export.as_markdown(found, transcript), "text/markdown"
    response = HttpResponse(body, content_type=f"{content_type}; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{export.filename(found, fmt)}"'
    return response


@page_view("GET")
async def sidebar(request: AuthenticatedRequest) -> HttpResponse:
    """Return the conversation list alone: for search as you type, and after a new title."""
    context = {**await sidebar_context(request), "current_pk": _current_pk(request)}
    return await render_page(request, "chat/_sidebar.html#list", context)


@page_view("GET")
async def message(request: AuthenticatedRequest, pk: str) -> HttpResponse:
    """Return one message as the transcript shows it: a finished answer replaces its bubble."""
    messages = Message.objects.owned_by(request.user).select_related("conversation")
    found = await owned(messages, pk, "message")
    tree = await Tree.of(found.conversation)
    shown = tree.by_id[found.pk]
    context = {
        "message": _prepared(shown, tree),
        "conversation": found.conversation,
        "last_answer_id": shown.pk if found.conversation.current_leaf_id == shown.pk else None,
    }
    return await render_page(request, "chat/conversation.html#message", context)


# Helpers


async def _conversation_of(request: AuthenticatedRequest, pk: str) -> Conversation:
    return await owned(Conversation.objects.owned_by(request.user), pk, "conversation")


async def _answer_text(request: AuthenticatedRequest, pk: str, *, edit: bool) -> HttpResponse:
    """Answer the posted text: as a new message, or as the user's last one, edited."""
    found = await _conversation_of(request, pk)
    form = MessageForm(request.POST)
    if not form.is_valid():
        return await _refused(request, found, form, status=422)
    content = form.cleaned_data["content"]
    if edit:
        question_id = request.POST.get("message") or None
        started = services.answer_again(
            conversation=found, content=content, question_id=question_id
        )
        return await _start_answer(request, found, started, MessageForm(), whole_transcript=True)
    try:
        ids, fresh = await _sent_files(request)
    except Refused as refused:
        return await _refusal(request, found, form, refused)
    started = services.message_post(conversation=found, content=content, attachment_ids=ids)
    started = _discarding_on_refusal(request, started, fresh)
    return await _start_answer(request, found, started, form, whole_transcript=False)


async def _sent_files(request: AuthenticatedRequest) -> tuple[list[str], list[Any]]:
    """Return the ids of the files sent with a message, and those of them stored just now:
    uploaded already (the script's `attachments` fields), or in this very form (`files`,
    without JavaScript), all checked before any is stored."""
    ids = request.POST.getlist("attachments")
    files = []
    for sent in request.FILES.getlist("files"):
        if sent.size is not None and sent.size > settings.CHAT_ATTACHMENT_MAX_BYTES:
            raise attachments.too_big()
        files.append((sent.name or "", sent.read()))
    if not files:
        return ids, []
    checked = await sync_to_async(attachments.check_all, thread_sensitive=False)(files, len(ids))
    stored = await db.write(attachments.store_all, request.user, checked)
    fresh = [attachment.pk for attachment in stored]
    return ids + [str(pk) for pk in fresh], fresh


async def _discarding_on_refusal(
    request: AuthenticatedRequest, started: Awaitable[Posted], fresh: list[Any]
) -> Posted:
    """Await the start; a refusal takes back the files this very post stored."""
    try:
        return await started
    except Refused:
        if fresh:
            await db.write(attachments.discard_unsent, request.user, fresh)
        raise


async def _start_answer(
    request: AuthenticatedRequest,
    found: Conversation,
    started: Awaitable[Posted],
    form: MessageForm,
    *,
    whole_transcript: bool,
) -> HttpResponse:
    """Show the answer `started` starts, or why it could not start, with `form` below."""
    try:
        posted = await started
    except Refused as refused:
        return await _refusal(request, found, form, refused)
    return await _answering(request, found, posted, whole_transcript=whole_transcript)


async def _answering(
    request: AuthenticatedRequest, found: Conversation, posted: Posted, *, whole_transcript: bool
) -> HttpResponse:
    """Show the answer just started: the new exchange, or the whole transcript."""
    if not is_htmx(request):
        return HttpResponseRedirect(found.get_absolute_url())
    if whole_transcript:
        # Another branch is on screen now: the transcript is replaced as a whole.
        await found.arefresh_from_db(fields=["current_leaf"])
        context = await _transcript_context(found)
    else:
        question, generation = posted
        answer = generation.message
        answer.generation = generation
        context = {
            "conversation": found,
            "transcript": [_prepared(question), _prepared(answer)],
        }
    return await render_page(request, "chat/conversation.html#transcript", context)


async def _home_page(
    request: AuthenticatedRequest, form: NewConversationForm, status: int = 200
) -> HttpResponse:
    context = {**await sidebar_context(request), "form": form}
    return await render_page(request, "chat/home.html", context, status=status)


async def _home_refused(
    request: AuthenticatedRequest, form: NewConversationForm, *, status: int
) -> HttpResponse:
    if is_htmx(request):
        return await _composer_errors(request, form, status=status)
    return await _home_page(request, form, status=status)


async def _conversation_page(
    request: AuthenticatedRequest, found: Conversation, form: MessageForm, status: int = 200
) -> HttpResponse:
    context = {
        "model_label": model_label(found.model),
        **await sidebar_context(request),
        "form": form,
        **await _transcript_context(found),
    }
    return await render_page(request, "chat/conversation.html", context, status=status)


async def _transcript_context(found: Conversation) -> dict[str, Any]:
    tree = await Tree.of(found)
    # Not "messages": that name is django.contrib.messages' in templates.
    transcript = [_prepared(message, tree) for message in tree.current(found)]
    last = transcript[-1] if transcript else None
    return {
        "conversation": found,
        "transcript": transcript,
        "last_answer_id": last.pk if last and last.role == Message.Role.ASSISTANT else None,
    }


async def _refusal(
    request: AuthenticatedRequest, found: Conversation, form: MessageForm, refused: Refused
) -> HttpResponse:
    """Show why no answer started in the composer, with the refusal's status."""
    if not form.is_bound:
        # Regenerate and edit post no message to keep: bind the form to nothing first.
        form = MessageForm({"content": ""})
        form.errors.pop("content", None)  # empty is fine here: nothing was typed
    form.add_error(None, refused.message)
    return _retry_after(await _refused(request, found, form, status=refused.status), refused)


async def _refused(
    request: AuthenticatedRequest, found: Conversation, form: MessageForm, *, status: int
) -> HttpResponse:
    if is_htmx(request):
        return await _composer_errors(request, form, status=status)
    return await _conversation_page(request, found, form, status=status)


async def _composer_errors(
    request: AuthenticatedRequest, form: MessageForm, *, status: int
) -> HttpResponse:
    # Only the errors are swapped in (hx-status on the form): what was typed stays put.
    return await render_page(request, "chat/_composer.html#errors", {"form": form}, status=status)


def _retry_after(response: HttpResponse, refused: Refused) -> HttpResponse:
    if refused.retry_after is not None:
        response["Retry-After"] = str(refused.retry_after)
    return response


def _current_pk(request: AuthenticatedRequest) -> str:
    return request.GET.get("current") or request.POST.get("current") or ""


def _prepared(message: Message, tree: Tree | None = None) -> Message:
    """Attach what the template shows besides the fields: the answer's HTML (Markdown
    rendered and sanitised, once it is final), the message's versions, whether it can go on.
    """
    extra: Any = message  # the attributes are for the template only
    if message.role == Message.Role.ASSISTANT and not message.is_streaming:
        extra.html = render_markdown(message.content)
    extra.versions = tree.versions(message) if tree is not None else None
    extra.can_continue = services.can_continue(message)
    return message


def _redirect(request: AuthenticatedRequest, url: str) -> HttpResponse:
    if is_htmx(request):
        # A full page load: the new page starts its own stream, with its own script state.
        return HttpResponse(headers={"HX-Redirect": url})
    return HttpResponseRedirect(url)
