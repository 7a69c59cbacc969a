"""
The chat's pages: the conversation list, one conversation, posting to it, and one message.

Every page works without JavaScript; with htmx the composer posts in place and gets back
fragments rendered from the very partials the full pages use.
"""

from typing import Any

from asgiref.sync import sync_to_async
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import aget_object_or_404, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from chat import generation as generations
from chat import services
from chat.forms import MessageForm, NewConversationForm
from chat.middleware import request_id_var
from chat.models import Conversation, Message
from chat.render import render_markdown

# How many conversations the sidebar lists.
SIDEBAR_LENGTH = 100
BUSY = "Wait for the current answer to finish, or stop it."


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
        if is_htmx(request):
            return await _composer_errors(request, form, status=422)
        return await _home_page(request, user, form, status=422)
    conversation = await services.conversation_create(owner=user, model=form.cleaned_data["model"])
    # A new conversation has no answer streaming: message_post cannot be busy here.
    _, generation = await services.message_post(
        conversation=conversation,
        content=form.cleaned_data["content"],
        request_id=request_id_var.get(),
    )
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
    status = 422
    if form.is_valid():
        try:
            question, generation = await services.message_post(
                conversation=found,
                content=form.cleaned_data["content"],
                request_id=request_id_var.get(),
            )
        except services.ConversationBusy:
            form.add_error("content", BUSY)
            status = 409
        else:
            await generations.start(generation)
            if not is_htmx(request):
                return HttpResponseRedirect(found.get_absolute_url())
            answer = generation.message
            answer.generation = generation
            context = {"transcript": [_prepared(question), _prepared(answer)]}
            return await _render(request, "chat/conversation.html#transcript", context)
    if is_htmx(request):
        return await _composer_errors(request, form, status=status)
    return await _conversation_page(request, user, found, form, status=status)


@login_required
@require_GET
async def message(request: HttpRequest, pk: str) -> HttpResponse:
    """Return one message as the transcript shows it: a finished answer replaces its bubble."""
    user = await request.auser()
    found = await aget_object_or_404(
        Message.objects.select_related("generation"), pk=pk, conversation__owner=user
    )
    return await _render(request, "chat/conversation.html#message", {"message": _prepared(found)})


async def _home_page(
    request: HttpRequest, user: Any, form: NewConversationForm, status: int = 200
) -> HttpResponse:
    context = {"conversations": await _sidebar(user), "form": form}
    return await _render(request, "chat/home.html", context, status=status)


async def _conversation_page(
    request: HttpRequest, user: Any, found: Conversation, form: MessageForm, status: int = 200
) -> HttpResponse:
    messages = found.messages.select_related("generation")
    context = {
        "conversation": found,
        "conversations": await _sidebar(user),
        # Not "messages": that name is django.contrib.messages' in templates.
        "transcript": [_prepared(message) async for message in messages],
        "form": form,
    }
    return await _render(request, "chat/conversation.html", context, status=status)


async def _composer_errors(request: HttpRequest, form: MessageForm, *, status: int) -> HttpResponse:
    # Only the errors are swapped in (hx-status on the form): what was typed stays put.
    return await _render(request, "chat/_composer.html#errors", {"form": form}, status=status)


async def _sidebar(user: Any) -> list[Conversation]:
    recent = Conversation.objects.owned_by(user).only("id", "title", "updated_at")
    return [found async for found in recent[:SIDEBAR_LENGTH]]


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
    # Context processors may touch the database synchronously: render off the event loop.
    return await sync_to_async(render)(request, template, context, status=status)
