"""The API key never reaches a page, an API answer, a stream, an error message or a log line.

Also when the upstream echoes the key back in its error (some OpenAI-compatible servers
do): what it says is never shown or logged as it is.
"""

import logging

import pytest
from asgiref.sync import sync_to_async
from django.contrib import admin
from django.urls import reverse

from chat.models import Conversation
from tests.asgi_client import AsgiClient
from tests.fakeopenai import Reply
from tests.test_stream import ask, stored_answer, stream

pytestmark = [pytest.mark.anyio, pytest.mark.django_db(transaction=True)]

KEY = "sk-test-SECRET-123"
ECHOED = f"Incorrect API key provided: {KEY}. You can find your API key at ..."


@pytest.fixture
def keyed(upstream, settings, alice):
    """The fake upstream behind a recognisable key; alice is a superuser, to see the admin."""
    settings.OPENAI_API_KEY = KEY
    settings.CHAT_UPSTREAM_MAX_RETRIES = 1  # the SDK's retry logs a line too
    alice.is_staff = alice.is_superuser = True
    alice.save()
    return upstream


@pytest.fixture
def logs(caplog):
    """Every log line of the project, the SDK and its HTTP client, down to DEBUG."""
    caplog.set_level(logging.DEBUG)
    for name in ("chat", "openai", "httpx2", "httpcore2"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def leaks(where: str, text: str) -> list[str]:
    return [where] if KEY in text or "SECRET-123" in text else []


def paths_showing(conversation_id: str) -> list[str]:
    """Every page, fragment, export, API answer and admin page that shows the conversation."""
    conversation = Conversation.objects.get(pk=conversation_id)
    paths = [
        "/",
        reverse("chat:sidebar"),
        reverse("chat:usage"),
        reverse("chat:conversation", args=[conversation.pk]),
        reverse("chat:export-markdown", args=[conversation.pk]),
        reverse("chat:export-json", args=[conversation.pk]),
        *(reverse("chat:message", args=[m.pk]) for m in conversation.messages.all()),
        "/api/conversations/",
        f"/api/conversations/{conversation.pk}/",
        reverse("admin:index"),
    ]
    for model in admin.site._registry:
        name = f"admin:{model._meta.app_label}_{model._meta.model_name}"
        paths.append(reverse(f"{name}_changelist"))
        paths += [
            reverse(f"{name}_change", args=[pk])
            for pk in model.objects.values_list("pk", flat=True)
        ]
    return paths


async def shown(api: AsgiClient, conversation_id: str) -> list[tuple[str, str]]:
    """Each path that shows the conversation, and what it answers (headers and body)."""
    answers = []
    for path in await sync_to_async(paths_showing)(conversation_id):
        response = await api.get(path)
        assert response.status == 200, path
        answers.append((path, f"{response.headers}\n{(await response.body()).decode()}"))
    return answers


async def leaks_of_an_answer(api: AsgiClient, posted: dict) -> list[str]:
    """Where the key shows: the stream, a page or an API answer about the conversation."""
    raw = await (await stream(api, posted)).body()
    found = leaks("the stream", raw.decode())
    message = await stored_answer(posted)
    for path, text in await shown(api, message.conversation_id):
        found += leaks(path, text)
    return found


async def test_an_answer_shows_and_logs_the_key_nowhere(api, keyed, logs):
    keyed.reply_to("Hi", Reply(tokens=["Hel", "lo"]))

    posted = await ask(api, "Hi")
    found = await leaks_of_an_answer(api, posted)

    # The key was in use: the upstream got it, and only the upstream.
    assert keyed.requests[0]["headers"]["authorization"] == f"Bearer {KEY}"
    assert found == []
    assert leaks("the logs", logs.text) == []


@pytest.mark.parametrize(
    "failure",
    [
        Reply(tokens=[], status=401, error_message=ECHOED),
        Reply(tokens=[], status=403, error_message=ECHOED),
        Reply(tokens=[], status=500, error_message=ECHOED),
        Reply(tokens=["partial "], in_band_error=ECHOED),
    ],
    ids=["401", "403", "500", "in-band"],
)
async def test_an_upstream_error_echoing_the_key_shows_and_logs_it_nowhere(
    api, keyed, logs, failure
):
    keyed.reply_to("Hi", failure)

    posted = await ask(api, "Hi")
    found = await leaks_of_an_answer(api, posted)
    completion = await api.post("/api/completions", {"prompt": "Hi"})
    found += leaks("a stateless completion", (await completion.body()).decode())

    assert (await stored_answer(posted)).status == "error"
    assert found == []
    assert leaks("the logs", logs.text) == []
