"""
The chat's pages: the conversation list, one conversation, posting to it, answering
again, renaming, deleting, exporting, and one message.

Every page works without JavaScript; with htmx the forms post in place and get back
fragments rendered from the very partials the full pages use.
"""

from collections.abc import Awaitable
from typing import Any

from asgiref.sync import sync_to_async
from django.contrib import messages as flash
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import aget_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from chat import export, services
from chat import generation as generations
from chat.forms import MessageForm, NewConversationForm, RenameForm, model_label
from chat.limits import LimitExceeded
from chat.middleware import request_id_var
from chat.models import Conversation, Generation, Message
from chat.render import render_markdown
from chat.sidebar import clean_query, conversation_groups

BUSY = "Wait for the current answer to finish, or stop it."
NOTHING_TO_ANSWER = "This conversation has no message of yours to answer."


def is_htmx(request: HttpRequest) -> bool:
    return request.headers.get("HX-Request") == "true"


@login_required
@require_http_methods(["GET", "POST"])
async def home(request: HttpRequest) -> HttpResponse:
    user = await request.auser()
    if request.method != "POST":
        return await _home_page(request, user, NewConversationForm())
    form = NewConversationForm(request.POST)
    if not form.is_valid():
        return await _home_refused(request, user, form, status=422)
    conversation = await services.conversation_create(
        owner=user,
        model=form.cleaned_data["model"],
        system_prompt=form.cleaned_data["system_prompt"].strip(),
    )
    try:
        # A new conversation has no answer streaming: message_post cannot be busy here.
        _, generation = await services.message_post(
            conversation=conversation,
            content=form.cleaned_data["content"],
            request_id=request_id_var.get(),
        )
    except LimitExceeded as exc:
        # Nothing was said in it: do not leave an empty conversation behind.
        await conversation.adelete()
        form.add_error(None, exc.message)
        response = await _home_refused(request, user, form, status=429)
        response["Retry-After"] = str(exc.retry_after)
        return response
    await generations.start(generation)
    return _redirect(request, conversation.get_absolute_url())


@login_required
@require_GET
async def conversation(request: HttpRequest, pk: str) -> HttpResponse:
    user = await request.auser()
    found = await aget_object_or_404(Conversation.objects.owned_by(user), pk=pk)
    return await _conversation_page(request, user, found, MessageForm())


@login_required
@require_POST
async def message_create(request: HttpRequest, pk: str) -> HttpResponse:
    user = await request.auser()
    found = await aget_object_or_404(Conversation.objects.owned_by(user), pk=pk)
    form = MessageForm(request.POST)
    if not form.is_valid():
        return await _refused(request, user, found, form, status=422)
    posting = services.message_post(
        conversation=found, content=form.cleaned_data["content"], request_id=request_id_var.get()
    )
    return await _answer(request, user, found, form, posting, whole_transcript=False)


@login_required
@require_POST
async def regenerate(request: HttpRequest, pk: str) -> HttpResponse:
    """Answer the last message of the user's anew (also the Retry of a failed answer)."""
    user = await request.auser()
    found = await aget_object_or_404(Conversation.objects.owned_by(user), pk=pk)
    posting = services.answer_again(conversation=found, request_id=request_id_var.get())
    return await _answer(request, user, found, MessageForm(), posting, whole_transcript=True)


@login_required
@require_POST
async def edit(request: HttpRequest, pk: str) -> HttpResponse:
    """Replace the text of the user's last message and answer it anew."""
    user = await request.auser()
    found = await aget_object_or_404(Conversation.objects.owned_by(user), pk=pk)
    form = MessageForm(request.POST)
    if not form.is_valid():
        return await _refused(request, user, found, form, status=422)
    posting = services.answer_again(
        conversation=found, content=form.cleaned_data["content"], request_id=request_id_var.get()
    )
    return await _answer(request, user, found, MessageForm(), posting, whole_transcript=True)


@login_required
@require_POST
async def rename(request: HttpRequest, pk: str) -> HttpResponse:
    user = await request.auser()
    found = await aget_object_or_404(Conversation.objects.owned_by(user), pk=pk)
    form = RenameForm(request.POST)
    if form.is_valid():
        await services.conversation_rename(conversation=found, title=form.cleaned_data["title"])
    if is_htmx(request):
        if not form.is_valid():
            return HttpResponse(status=422)
        # The list (where the title shows) and, out of band, the page's own title.
        context = {
            "groups": await conversation_groups(user),
            "current_pk": _current_pk(request),
            "renamed": found,
        }
        return await _render(request, "chat/_sidebar.html#renamed", context)
    if not form.is_valid():
        flash.error(request, "A title cannot be empty, nor longer than 200 characters.")
    return HttpResponseRedirect(found.get_absolute_url())


@login_required
@require_http_methods(["GET", "POST"])
async def delete(request: HttpRequest, pk: str) -> HttpResponse:
    """Ask first (GET: a confirmation page), then delete (POST), stopping a running answer."""
    user = await request.auser()
    found = await aget_object_or_404(Conversation.objects.owned_by(user), pk=pk)
    if request.method != "POST":
        context = {"conversation": found, "groups": await conversation_groups(user)}
        return await _render(request, "chat/delete.html", context)
    title = str(found)
    await services.conversation_delete(conversation=found)
    flash.success(request, f"Deleted “{title}”.")
    return _redirect(request, reverse("chat:home"))


@login_required
@require_GET
async def export_conversation(request: HttpRequest, pk: str, fmt: str) -> HttpResponse:
    user = await request.auser()
    found = await aget_object_or_404(Conversation.objects.owned_by(user), pk=pk)
    transcript = [message async for message in found.messages.all()]
    if fmt == "json":
        body, content_type = export.as_json(found, transcript), "application/json"
    else:
        body, content_type = export.as_markdown(found, transcript), "text/markdown"
    response = HttpResponse(body, content_type=f"{content_type}; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{export.filename(found, fmt)}"'
    return response


@login_required
@require_GET
async def sidebar(request: HttpRequest) -> HttpResponse:
    """Return the conversation list alone: for search as you type, and after a new title."""
    user = await request.auser()
    query = clean_query(request.GET.get("q"))
    context = {
        "groups": await conversation_groups(user, query),
        "query": query,
        "current_pk": _current_pk(request),
    }
    return await _render(request, "chat/_sidebar.html#list", context)


@login_required
@require_GET
async def message(request: HttpRequest, pk: str) -> HttpResponse:
    """Return one message as the transcript shows it: a finished answer replaces its bubble."""
    user = await request.auser()
    found = await aget_object_or_404(
        Message.objects.select_related("generation", "conversation"),
        pk=pk,
        conversation__owner=user,
    )
    later = Message.objects.filter(
        conversation_id=found.conversation_id, created_at__gt=found.created_at
    )
    context = {
        "message": _prepared(found),
        "conversation": found.conversation,
        "last_answer_id": None if await later.aexists() else found.pk,
    }
    return await _render(request, "chat/conversation.html#message", context)


# Helpers


async def _answer(
    request: HttpRequest,
    user: Any,
    found: Conversation,
    form: MessageForm,
    posting: Awaitable[tuple[Message, Generation]],
    *,
    whole_transcript: bool,
) -> HttpResponse:
    """Start the answer a posting creates; show it, or say why there is none."""
    try:
        question, generation = await posting
    except services.ConversationBusy:
        form = _with_error(form, BUSY)
        return await _refused(request, user, found, form, status=409)
    except services.NothingToAnswer:
        form = _with_error(form, NOTHING_TO_ANSWER)
        return await _refused(request, user, found, form, status=409)
    except LimitExceeded as exc:
        form = _with_error(form, exc.message)
        response = await _refused(request, user, found, form, status=429)
        response["Retry-After"] = str(exc.retry_after)
        return response
    await generations.start(generation)
    if not is_htmx(request):
        return HttpResponseRedirect(found.get_absolute_url())
    if whole_transcript:
        # Answers were deleted: the transcript is replaced as a whole.
        context = await _transcript_context(found)
    else:
        answer = generation.message
        answer.generation = generation
        context = {
            "conversation": found,
            "transcript": [_prepared(question), _prepared(answer)],
            "last_question_id": question.pk,
        }
    return await _render(request, "chat/conversation.html#transcript", context)


async def _home_page(
    request: HttpRequest, user: Any, form: NewConversationForm, status: int = 200
) -> HttpResponse:
    query = clean_query(request.GET.get("q"))
    context = {"groups": await conversation_groups(user, query), "query": query, "form": form}
    return await _render(request, "chat/home.html", context, status=status)


async def _home_refused(
    request: HttpRequest, user: Any, form: NewConversationForm, *, status: int
) -> HttpResponse:
    if is_htmx(request):
        return await _composer_errors(request, form, status=status)
    return await _home_page(request, user, form, status=status)


async def _conversation_page(
    request: HttpRequest, user: Any, found: Conversation, form: MessageForm, status: int = 200
) -> HttpResponse:
    query = clean_query(request.GET.get("q"))
    context = {
        "conversation": found,
        "model_label": model_label(found.model),
        "groups": await conversation_groups(user, query),
        "query": query,
        "form": form,
        **await _transcript_context(found),
    }
    return await _render(request, "chat/conversation.html", context, status=status)


async def _transcript_context(found: Conversation) -> dict[str, Any]:
    # Not "messages": that name is django.contrib.messages' in templates.
    transcript = [
        _prepared(message) async for message in found.messages.select_related("generation")
    ]
    questions = [message for message in transcript if message.role == Message.Role.USER]
    last = transcript[-1] if transcript else None
    return {
        "conversation": found,
        "transcript": transcript,
        "last_question_id": questions[-1].pk if questions else None,
        "last_answer_id": last.pk if last and last.role == Message.Role.ASSISTANT else None,
    }


async def _refused(
    request: HttpRequest, user: Any, found: Conversation, form: MessageForm, *, status: int
) -> HttpResponse:
    if is_htmx(request):
        return await _composer_errors(request, form, status=status)
    return await _conversation_page(request, user, found, form, status=status)


async def _composer_errors(request: HttpRequest, form: MessageForm, *, status: int) -> HttpResponse:
    # Only the errors are swapped in (hx-status on the form): what was typed stays put.
    return await _render(request, "chat/_composer.html#errors", {"form": form}, status=status)


def _with_error(form: MessageForm, message: str) -> MessageForm:
    """Return the form, showing message; an unbound one (regenerate) is bound to nothing first."""
    if not form.is_bound:
        form = MessageForm({"content": ""})
        form.errors.pop("content", None)  # empty is fine here: nothing was typed
    form.add_error(None, message)
    return form


def _current_pk(request: HttpRequest) -> str:
    return request.GET.get("current") or request.POST.get("current") or ""


def _prepared(message: Message) -> Message:
    """Attach the answer's HTML: Markdown rendered and sanitised, once it is final."""
    if message.role == Message.Role.ASSISTANT and not message.is_streaming:
        message.html = render_markdown(message.content)  # type: ignore[attr-defined]
    return message


def _redirect(request: HttpRequest, url: str) -> HttpResponse:
    if is_htmx(request):
        # A full page load: the new page starts its own stream, with its own script state.
        return HttpResponse(headers={"HX-Redirect": url})
    return HttpResponseRedirect(url)


async def _render(
    request: HttpRequest, template: str, context: dict[str, Any], status: int = 200
) -> HttpResponse:
    # The user resolved already, or the auth context processor would load it again.
    context.setdefault("user", await request.auser())
    if "conversation" in context:
        # The sidebar marks the open conversation; fragments name it with ?current=.
        context.setdefault("current_pk", str(context["conversation"].pk))
    # Context processors may touch the database synchronously: render off the event loop.
    return await sync_to_async(render)(request, template, context, status=status)
