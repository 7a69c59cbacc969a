"""The JSON API: conversations and their tree of messages, answers, and cancelling them."""

from django.conf import settings
from django.http import HttpResponse, HttpResponseBase, JsonResponse

from chat import db, refusals, services
from chat import generation as generations
from chat.branches import Tree
from chat.eventlog import EventLogUnavailable
from chat.models import Conversation, Generation
from chat.serialize import ConversationDict, conversation_dict, generation_dict, message_dict
from chat.services import Posted
from chat.stream_access import stream_url
from chat.views.decorators import AuthenticatedRequest, api_view
from chat.views.owned import owned
from chat.views.responses import BadRequest, json_body, text_field
from chat.views.stream import accepts_event_stream, event_stream_response


@api_view("GET", "POST")
async def conversations(request: AuthenticatedRequest) -> HttpResponseBase:
    if request.method == "POST":
        return await _conversation_create(request)
    found = await db.run(list, Conversation.objects.owned_by(request.user))
    return JsonResponse({"conversations": [conversation_dict(c) for c in found]})


async def _conversation_create(request: AuthenticatedRequest) -> HttpResponseBase:
    data = json_body(request)
    title = text_field(data, "title", max_length=200)
    system_prompt = text_field(data, "system_prompt", max_length=settings.CHAT_MAX_MESSAGE_CHARS)
    model = text_field(data, "model", max_length=100) or settings.CHAT_MODEL
    if model not in settings.CHAT_MODELS:
        raise BadRequest(
            "unknown_model", f"'model' must be one of: {', '.join(settings.CHAT_MODELS)}."
        )
    conversation = await services.conversation_create(
        owner=request.user, title=title.strip(), model=model, system_prompt=system_prompt
    )
    return JsonResponse(conversation_dict(conversation), status=201)


@api_view("GET", "PATCH", "DELETE")
async def conversation(request: AuthenticatedRequest, pk: str) -> HttpResponseBase:
    found = await owned(Conversation.objects.owned_by(request.user), pk, "conversation")
    if request.method == "DELETE":
        await services.conversation_delete(conversation=found)
        return HttpResponse(status=204)
    if request.method == "PATCH":
        title = text_field(json_body(request), "title", max_length=200, required=True)
        await services.conversation_rename(conversation=found, title=title.strip())
        return JsonResponse(conversation_dict(found))
    return JsonResponse(await _tree_dict(found))


async def _tree_dict(found: Conversation) -> ConversationDict:
    """The conversation with every message (each names its parent) and the branch on screen."""
    tree = await Tree.of(found)
    data = conversation_dict(found)
    data["messages"] = [message_dict(message) for message in tree.messages]
    data["branch"] = [str(message.pk) for message in tree.current(found)]
    return data


@api_view("POST")
async def messages(request: AuthenticatedRequest, pk: str) -> HttpResponseBase:
    """Post a message: after the branch on screen, or after the answer "parent_id" names."""
    data = json_body(request)
    content = _content(data, required=True)
    parent_id = _message_id(data, "parent_id") if "parent_id" in data else services.AT_LEAF
    posted = await services.message_post(
        conversation=services.Owned(pk, request.user),
        content=content,
        api_key=request.api_key,
        parent_id=parent_id,
        attachment_ids=_attachment_ids(data),
    )
    return await _answering(request, posted)


@api_view("POST")
async def regenerate(request: AuthenticatedRequest, pk: str) -> HttpResponseBase:
    """Answer a question anew ("message_id"; the last on screen by default) as a new version;
    with "content", ask it anew with that text, as a new version of the question."""
    data = json_body(request)
    content = _content(data, required=True) if "content" in data else None
    posted = await services.answer_again(
        conversation=services.Owned(pk, request.user),
        content=content,
        question_id=_message_id(data, "message_id"),
        api_key=request.api_key,
    )
    return await _answering(request, posted)


@api_view("POST")
async def continue_answer(request: AuthenticatedRequest, pk: str) -> HttpResponseBase:
    """Have the last answer on screen, cut off or stopped, write on into the same message."""
    posted = await services.answer_continue(
        conversation=services.Owned(pk, request.user), api_key=request.api_key
    )
    return await _answering(request, posted)


@api_view("POST")
async def switch(request: AuthenticatedRequest, pk: str) -> HttpResponseBase:
    """Put the branch through "message_id" on screen, down to its newest answer."""
    found = await owned(Conversation.objects.owned_by(request.user), pk, "conversation")
    message_id = _message_id(json_body(request), "message_id", required=True)
    await services.branch_switch(conversation=found, message_id=message_id)
    await db.run(found.refresh_from_db)
    return JsonResponse(await _tree_dict(found))


def _message_id(data: dict[str, object], name: str, *, required: bool = False) -> str | None:
    value = data.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise BadRequest("invalid_field", f"'{name}' must be a message id.")
    return value


def _attachment_ids(data: dict[str, object]) -> list[str]:
    ids = data.get("attachments", [])
    if not isinstance(ids, list) or not all(isinstance(pk, str) for pk in ids):
        raise BadRequest("invalid_field", "'attachments' must be a list of attachment ids.")
    return ids


def _content(data: dict[str, object], *, required: bool) -> str:
    return text_field(
        data, "content", max_length=settings.CHAT_MAX_MESSAGE_CHARS, required=required
    )


async def _answering(request: AuthenticatedRequest, posted: Posted) -> HttpResponseBase:
    """Return the started answer's stream, or where to find it."""
    question, generation = posted
    url = stream_url(request, generation)
    if accepts_event_stream(request):
        response = event_stream_response(generation)
        # Where to reconnect, and what to cancel, for a client that has only this stream.
        response["Location"] = url
        response["X-Cancel-URL"] = generation.get_cancel_url()
        return response
    return JsonResponse(
        {"message": message_dict(question), "generation": generation_dict(generation, url)},
        status=202,
    )


@api_view("POST")
async def generation_cancel(request: AuthenticatedRequest, pk: str) -> HttpResponseBase:
    found = await owned(Generation.objects.owned_by(request.user), pk, "generation")
    try:
        await generations.cancel(found)
    except EventLogUnavailable:
        raise refusals.event_log_unavailable() from None
    return JsonResponse({"id": str(found.pk), "finished": found.is_finished}, status=202)
