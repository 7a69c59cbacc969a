"""
Feedback on answers (chat/feedback.py): the thumbs and comment box under each finished
answer, and the JSON endpoint.

On the page a thumb is a toggle: the pressed one again takes the rating back. The comment
box posts the rating with its comment, and replaces both.
"""

from django import forms
from django.contrib import messages as flash
from django.http import HttpResponse, HttpResponseBase, HttpResponseRedirect, JsonResponse

from chat import db, feedback
from chat.models import Message
from chat.refusals import Refused
from chat.serialize import feedback_dict
from chat.views.decorators import AuthenticatedRequest, api_view, page_view
from chat.views.layout import is_htmx, render_page
from chat.views.owned import owned
from chat.views.responses import BadRequest, json_body, text_field


class FeedbackForm(forms.Form):
    rating = forms.ChoiceField(choices=[(rating, rating) for rating in feedback.RATINGS])
    comment = forms.CharField(max_length=feedback.MAX_COMMENT_CHARS, required=False, strip=True)


@api_view("GET", "PUT", "DELETE")
async def message_feedback(request: AuthenticatedRequest, pk: str) -> HttpResponseBase:
    found = await _answer_of(request, pk)
    if request.method == "GET":
        given = feedback.of(found)
        if given is None:
            return JsonResponse(
                {"error": {"code": "no_feedback", "message": "This answer has no feedback."}},
                status=404,
            )
        return JsonResponse(feedback_dict(given))
    if request.method == "DELETE":
        await db.write(feedback.clear, found.pk)
        return HttpResponse(status=204)
    data = json_body(request)
    rating = data.get("rating")
    if rating not in feedback.RATINGS:
        raise BadRequest("invalid_field", '\'rating\' must be "up" or "down".')
    comment = text_field(data, "comment", max_length=feedback.MAX_COMMENT_CHARS)
    given = await db.write(feedback.rate, found.pk, rating, comment.strip())
    return JsonResponse(feedback_dict(given))


@page_view("POST")
async def feedback_page(request: AuthenticatedRequest, pk: str) -> HttpResponse:
    """A thumb (rating alone: toggled) or the comment box (rating and comment: set)."""
    found = await _answer_of(request, pk)
    form = FeedbackForm(request.POST)
    status, error = 200, None
    if not form.is_valid():
        status = 422
        error = (
            'A rating is "up" or "down".'
            if "rating" in form.errors
            else f"A comment is at most {feedback.MAX_COMMENT_CHARS} characters."
        )
    else:
        rating = form.cleaned_data["rating"]
        try:
            if "comment" in request.POST:
                await db.write(feedback.rate, found.pk, rating, form.cleaned_data["comment"])
            else:
                await db.write(feedback.toggle, found.pk, rating)
        except Refused as refused:
            status, error = refused.status, refused.message
    if not is_htmx(request):
        if error:
            flash.error(request, error)
        return HttpResponseRedirect(f"{found.conversation.get_absolute_url()}#msg-{found.pk}")
    found = await _answer_of(request, pk)  # as it is now
    context = {
        "message": found,
        "conversation": found.conversation,
        "feedback_error": error,
        # Just rated: the comment box opens, as an invitation to say why.
        "feedback_asked": status == 200 and "comment" not in request.POST,
    }
    return await render_page(request, "chat/conversation.html#feedback", context, status)


async def _answer_of(request: AuthenticatedRequest, pk: str) -> Message:
    messages = Message.objects.owned_by(request.user).select_related("conversation", "feedback")
    return await owned(messages, pk, "message")
