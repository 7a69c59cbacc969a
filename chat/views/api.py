"""The JSON API: conversations, messages and cancelling generations."""

from collections.abc import Awaitable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from chat import generation as generations
from chat import services
from chat.eventlog import EventLogUnavailable
from chat.limits import LimitExceeded
from chat.middleware import request_id_var
from chat.models import Conversation, Generation, Message
from chat.serialize import conversation_dict, generation_dict, message_dict
from chat.views.responses import (
    BadRequest,
    api_view,
    json_body,
    json_error,
    text_field,
    too_many_requests,
)
from chat.views.stream import accepts_event_stream, event_stream_response


@api_view("GET", "POST")
async def conversations(request: HttpRequest) -> HttpResponse:
    user = await request.auser()
    if request.method == "POST":
        return await _conversation_create(request, user)
    found = [conversation_dict(c) async for c in Conversation.objects.owned_by(user)]
    return JsonResponse({"conversations": found})


async def _conversation_create(request: HttpRequest, user: object) -> HttpResponse:
    data = json_body(request)
    title = text_field(data, "title", max_length=200)
    system_prompt = text_field(data, "system_prompt", max_length=settings.CHAT_MAX_MESSAGE_CHARS)
    model = text_field(data, "model", max_length=100) or settings.CHAT_MODEL
    if model not in settings.CHAT_MODELS:
        raise BadRequest(
            "unknown_model", f"'model' must be one of: {', '.join(settings.CHAT_MODELS)}."
        )
    conversation = await services.conversation_create(
        owner=user, title=title.strip(), model=model, system_prompt=system_prompt
    )
    return JsonResponse(conversation_dict(conversation), status=201)


@api_view("GET", "PATCH", "DELETE")
async def conversation(request: HttpRequest, pk: str) -> HttpResponse:
    user = await request.auser()
    try:
        found = await Conversation.objects.owned_by(user).aget(pk=pk)
    except Conversation.DoesNotExist:
        return json_error(404, "not_found", "No such conversation.")
    if request.method == "DELETE":
        await services.conversation_delete(conversation=found)
        return HttpResponse(status=204)
    if request.method == "PATCH":
        title = text_field(json_body(request), "title", max_length=200, required=True)
        await services.conversation_rename(conversation=found, title=title.strip())
        return JsonResponse(conversation_dict(found))
    data = conversation_dict(found)
    data["messages"] = [message_dict(m) async for m in found.messages.all()]
    return JsonResponse(data)


@api_view("POST")
async def messages(request: HttpRequest, pk: str) -> HttpResponse:
    user = await request.auser()
    try:
        found = await Conversation.objects.owned_by(user).aget(pk=pk)
    except Conversation.DoesNotExist:
        return json_error(404, "not_found", "No such conversation.")
    content = _content(json_body(request), required=True)
    return await _answer(
        request,
        services.message_post(conversation=found, content=content, request_id=request_id_var.get()),
    )


@api_view("POST")
async def regenerate(request: HttpRequest, pk: str) -> HttpResponse:
    """Answer the last user message anew; with "content", edit that message first."""
    user = await request.auser()
    try:
        found = await Conversation.objects.owned_by(user).aget(pk=pk)
    except Conversation.DoesNotExist:
        return json_error(404, "not_found", "No such conversation.")
    data = json_body(request)
    content = _content(data, required=True) if "content" in data else None
    return await _answer(
        request,
        services.answer_again(conversation=found, content=content, request_id=request_id_var.get()),
    )


def _content(data: dict[str, object], *, required: bool) -> str:
    return text_field(
        data, "content", max_length=settings.CHAT_MAX_MESSAGE_CHARS, required=required
    )


async def _answer(
    request: HttpRequest, posting: Awaitable[tuple[Message, Generation]]
) -> HttpResponse:
    """Start the answer a posting creates; return its stream, or where to find it."""
    try:
        question, generation = await posting
    except services.ConversationBusy:
        return json_error(409, "busy", "Wait for the current answer to finish, or stop it.")
    except services.NothingToAnswer:
        return json_error(409, "nothing_to_answer", "This conversation has no message to answer.")
    except LimitExceeded as exc:
        return too_many_requests(exc)
    try:
        await generations.start(generation)
    except EventLogUnavailable:
        response = json_error(
            503, "event_log_unavailable", "Answers cannot stream right now; retry."
        )
        response["Retry-After"] = "2"
        return response
    if accepts_event_stream(request):
        response = await event_stream_response(generation)
        # Where to reconnect, and what to cancel, for a client that has only this stream.
        response["Location"] = generation.get_stream_url()
        response["X-Cancel-URL"] = generation.get_cancel_url()
        return response
    return JsonResponse(
        {"message": message_dict(question), "generation": generation_dict(generation)},
        status=202,
    )


@api_view("POST")
async def generation_cancel(request: HttpRequest, pk: str) -> HttpResponse:
    user = await request.auser()
    try:
        found = await Generation.objects.aget(pk=pk, conversation__owner=user)
    except Generation.DoesNotExist:
        return json_error(404, "not_found", "No such generation.")
    await generations.cancel(found)
    return JsonResponse({"id": str(found.pk), "finished": found.is_finished}, status=202)
