"""
The web pages: the conversation list, a conversation's transcript, posting to it, one
message's fragment. The cast (defined here): ann, who chats; ben, who must never see
ann's conversations.
"""

import asyncio
import re

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.db import connections
from django.test import AsyncClient, Client
from django.urls import reverse

from chat import generation
from chat.models import Conversation, Generation, Message

HTMX = {"HX-Request": "true"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def demo_model(settings) -> None:
    """The offline demo model, as with no OPENAI_* variable set; fast and deterministic."""
    settings.OPENAI_API_KEY = ""
    settings.OPENAI_BASE_URL = ""
    settings.CHAT_DEMO = True
    settings.CHAT_MODEL = "demo"
    settings.CHAT_MODELS = ["demo"]
    settings.CHAT_DEMO_TOKEN_DELAY = 0.0


@pytest.fixture
def ann(transactional_db) -> User:
    return User.objects.create_user("ann", password="a long pass phrase")


@pytest.fixture
def ben(transactional_db) -> User:
    return User.objects.create_user("ben", password="a long pass phrase")


@pytest.fixture
def client_ann(ann: User) -> Client:
    client = Client()
    client.force_login(ann)
    return client


@pytest.fixture
async def async_ann(ann: User):
    client = AsyncClient()
    await client.aforce_login(ann)
    yield client
    # Answers started by the test finish before the database goes away.
    await asyncio.wait_for(generation.wait_all(), 10)
    await sync_to_async(connections.close_all)()


def make_conversation(owner: User, *messages: dict, title: str = "Chat") -> Conversation:
    conversation = Conversation.objects.create(owner=owner, title=title, model="demo")
    for fields in messages:
        Message.objects.create(conversation=conversation, **fields)
    return conversation


def streaming_answer(conversation: Conversation, content: str = "") -> Message:
    answer = Message.objects.create(
        conversation=conversation, role="assistant", status="streaming", content=content
    )
    Generation.objects.create(
        message=answer, conversation=conversation, model="demo", request={"messages": []}
    )
    return answer


def html_of(response) -> str:
    return response.content.decode()


# Logging in and owning


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("method", "name", "args"),
    [
        ("get", "chat:home", []),
        ("post", "chat:home", []),
        ("get", "chat:conversation", ["6d3f0f6e-8f7c-4c1e-9a51-6a8c5e1f2b3c"]),
        ("post", "chat:message-create", ["6d3f0f6e-8f7c-4c1e-9a51-6a8c5e1f2b3c"]),
        ("get", "chat:message", ["6d3f0f6e-8f7c-4c1e-9a51-6a8c5e1f2b3c"]),
    ],
)
def test_it_sends_anonymous_visitors_to_the_login_page(client, method, name, args):
    url = reverse(name, args=args)

    response = getattr(client, method)(url)

    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next={url}"


def test_it_hides_another_users_conversation(client_ann, ben):
    theirs = make_conversation(ben, {"role": "user", "content": "ben's secret"})
    message = theirs.messages.get()

    page = client_ann.get(theirs.get_absolute_url())
    post = client_ann.post(reverse("chat:message-create", args=[theirs.pk]), {"content": "hi"})
    fragment = client_ann.get(reverse("chat:message", args=[message.pk]))

    assert (page.status_code, post.status_code, fragment.status_code) == (404, 404, 404)
    assert b"ben's secret" not in page.content + fragment.content
    assert theirs.messages.count() == 1


def test_it_lists_only_ones_own_conversations_newest_first(client_ann, ann, ben):
    make_conversation(ann, title="Older plans")
    current = make_conversation(ann, title="Newer plans")
    make_conversation(ben, title="Ben's plans")

    html = html_of(client_ann.get(current.get_absolute_url()))

    assert html.index("Newer plans") < html.index("Older plans")
    assert "Ben&#x27;s plans" not in html
    current_link = re.search(r'<a class="convs__link is-current"[^>]*>([^<]*)</a>', html)
    assert current_link is not None and current_link.group(1) == "Newer plans"
    assert 'aria-current="page"' in current_link.group(0)


def test_it_reads_the_transcript_in_a_fixed_number_of_queries(
    client_ann, ann, django_assert_num_queries
):
    conversation = make_conversation(
        ann,
        *[
            {"role": role, "content": f"{role} {n}"}
            for n in range(5)
            for role in ("user", "assistant")
        ],
    )
    for n in range(5):
        make_conversation(ann, title=f"other {n}")

    # Session, user, conversation, sidebar, transcript (with each answer's generation).
    with django_assert_num_queries(5):
        response = client_ann.get(conversation.get_absolute_url())

    assert response.status_code == 200


# The transcript


def test_it_renders_answers_as_markdown_and_user_text_as_escaped_text(client_ann, ann):
    conversation = make_conversation(
        ann,
        {"role": "user", "content": "<b>bold?</b>\nsecond line"},
        {"role": "assistant", "content": "# Title\n\n**strong** and `code`\n\n<script>x</script>"},
    )

    html = html_of(client_ann.get(conversation.get_absolute_url()))

    assert '<div class="msg__bubble">&lt;b&gt;bold?&lt;/b&gt;\nsecond line</div>' in html
    assert "<h1>Title</h1>" in html
    assert "<strong>strong</strong> and <code>code</code>" in html
    assert "<script>x</script>" not in html
    assert "&lt;script&gt;x&lt;/script&gt;" in html
    assert html.count('class="msg msg--') == 2
    assert 'class="flash"' not in html  # the transcript is not mistaken for flash messages


def test_it_renders_a_streaming_answer_as_a_live_bubble(client_ann, ann):
    conversation = make_conversation(ann, {"role": "user", "content": "Hello"})
    answer = streaming_answer(conversation, content="Partial <i>text</i> so far")

    html = html_of(client_ann.get(conversation.get_absolute_url()))

    bubble = re.search(
        r'<article class="msg msg--assistant msg--streaming".*?</article>', html, re.S
    )
    assert bubble is not None
    bubble_html = bubble.group(0)
    assert f'id="msg-{answer.pk}"' in bubble_html
    assert f'data-stream-url="{answer.generation.get_stream_url()}"' in bubble_html
    assert f'data-cancel-url="{answer.generation.get_cancel_url()}"' in bubble_html
    assert f'data-message-url="{reverse("chat:message", args=[answer.pk])}"' in bubble_html
    assert 'aria-live="polite"' in bubble_html
    assert "Partial &lt;i&gt;text&lt;/i&gt; so far" in bubble_html
    assert "data-stop" in bubble_html


def test_it_shows_failed_and_stopped_answers(client_ann, ann):
    conversation = make_conversation(
        ann,
        {"role": "user", "content": "one"},
        {
            "role": "assistant",
            "content": "Half an *answer*",
            "status": "error",
            "error_code": "upstream",
            "error_message": "The model is not reachable.",
        },
        {"role": "user", "content": "two"},
        {
            "role": "assistant",
            "content": "Cut",
            "status": "cancelled",
            "finish_reason": "cancelled",
        },
    )

    html = html_of(client_ann.get(conversation.get_absolute_url()))

    assert "Half an <em>answer</em>" in html
    assert html.index("Half an <em>answer</em>") < html.index("The model is not reachable.")
    assert '<p class="msg__note">Stopped</p>' in html


def test_it_serves_one_message_as_the_page_renders_it(client_ann, ann):
    conversation = make_conversation(
        ann, {"role": "user", "content": "q"}, {"role": "assistant", "content": "A *fine* answer"}
    )
    answer = conversation.messages.get(role="assistant")

    fragment = html_of(client_ann.get(reverse("chat:message", args=[answer.pk]))).strip()
    page = html_of(client_ann.get(conversation.get_absolute_url()))

    assert fragment.startswith(
        f'<article class="msg msg--assistant msg--complete" id="msg-{answer.pk}"'
    )
    assert "<em>fine</em>" in fragment
    assert "<html" not in fragment
    assert fragment in page


# The badge and the model choice


def test_it_labels_the_demo_model(client_ann):
    html = html_of(client_ann.get(reverse("chat:home")))

    assert "Offline demo model" in html
    assert 'name="model"' not in html  # only one model: nothing to choose


def test_it_offers_a_model_choice_without_the_demo_badge_for_a_real_model(client_ann, settings):
    settings.CHAT_DEMO = False
    settings.CHAT_MODEL = "gpt-a"
    settings.CHAT_MODELS = ["gpt-a", "gpt-b"]

    html = html_of(client_ann.get(reverse("chat:home")))

    assert "Offline demo model" not in html
    assert '<option value="gpt-a" selected>gpt-a</option>' in html
    assert '<option value="gpt-b">gpt-b</option>' in html


def test_it_configures_htmx_without_inline_script_or_style(client_ann):
    html = html_of(client_ann.get(reverse("chat:home")))

    body = re.search(r"<body [^>]*hx-headers:inherited='(\{[^']*\})'", html)
    assert body is not None and '"X-CSRFToken": "' in body.group(1)
    # Error statuses are not swapped blindly; the composer swaps only its own errors.
    assert '"noSwap": [204, 304, "4xx", "5xx"]' in html
    assert 'hx-status:422="target:#composer-errors swap:innerHTML"' in html
    assert "style=" not in html
    assert "<script>" not in html and "hx-on" not in html


# Posting


@pytest.mark.anyio
@pytest.mark.django_db(transaction=True)
async def test_it_starts_a_conversation_from_the_home_page(async_ann, ann):
    response = await async_ann.post(reverse("chat:home"), {"content": "Plan a picnic"})

    conversation = await Conversation.objects.aget(owner=ann)
    assert response.status_code == 302
    assert response["Location"] == conversation.get_absolute_url()
    assert (conversation.title, conversation.model) == ("Plan a picnic", "demo")
    await generation.wait_all()
    answer = await Message.objects.aget(conversation=conversation, role="assistant")
    assert answer.status == "complete"
    assert "offline demo model" in answer.content


@pytest.mark.anyio
@pytest.mark.django_db(transaction=True)
async def test_it_sends_htmx_to_the_new_conversation_with_hx_redirect(async_ann, ann):
    response = await async_ann.post(reverse("chat:home"), {"content": "Hi"}, headers=HTMX)

    conversation = await Conversation.objects.aget(owner=ann)
    assert response.status_code == 200
    assert response["HX-Redirect"] == conversation.get_absolute_url()


@pytest.mark.anyio
@pytest.mark.django_db(transaction=True)
async def test_it_posts_a_message_and_starts_the_answer(async_ann, ann):
    conversation = await sync_to_async(make_conversation)(ann)
    url = reverse("chat:message-create", args=[conversation.pk])

    response = await async_ann.post(url, {"content": "Line one\nline two"})

    assert response.status_code == 302
    assert response["Location"] == conversation.get_absolute_url()
    question, answer = [m async for m in conversation.messages.order_by("created_at")]
    assert (question.role, question.content) == ("user", "Line one\nline two")
    assert answer.role == "assistant"
    started = await Generation.objects.aget(message=answer)
    assert started.model == "demo"
    assert started.request["messages"][-1] == {"role": "user", "content": "Line one\nline two"}
    await generation.wait_all()
    await answer.arefresh_from_db()
    assert answer.status == "complete"
    assert "> Line one\n> line two" in answer.content


@pytest.mark.anyio
@pytest.mark.django_db(transaction=True)
async def test_it_returns_the_exchange_to_htmx_and_streams_the_answer(async_ann, ann):
    conversation = await sync_to_async(make_conversation)(ann)
    url = reverse("chat:message-create", args=[conversation.pk])

    response = await async_ann.post(url, {"content": "Hello <there>"}, headers=HTMX)

    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in html
    assert '<div class="msg__bubble">Hello &lt;there&gt;</div>' in html
    assert html.index("msg--user") < html.index("msg--streaming")
    stream_url = re.search(r'data-stream-url="([^"]+)"', html).group(1)
    stream = await async_ann.get(stream_url)
    assert stream["Content-Type"].startswith("text/event-stream")
    body = b"".join([chunk async for chunk in stream.streaming_content]).decode()
    assert "event: delta" in body
    assert "event: done" in body


@pytest.mark.anyio
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("content", ["", "  \n\t ", "x" * 41])
async def test_it_refuses_an_empty_or_too_long_message_in_place(async_ann, ann, settings, content):
    settings.CHAT_MAX_MESSAGE_CHARS = 40
    conversation = await sync_to_async(make_conversation)(ann)
    url = reverse("chat:message-create", args=[conversation.pk])

    response = await async_ann.post(url, {"content": content}, headers=HTMX)

    html = response.content.decode()
    assert response.status_code == 422
    assert "Write a message first." in html or "at most 40 characters" in html
    assert "<textarea" not in html  # only the errors are swapped: the typed text stays
    assert await Message.objects.acount() == 0
    assert await Generation.objects.acount() == 0


@pytest.mark.anyio
@pytest.mark.django_db(transaction=True)
async def test_it_shows_the_page_again_with_the_error_without_javascript(async_ann, ann, settings):
    settings.CHAT_MAX_MESSAGE_CHARS = 10
    conversation = await sync_to_async(make_conversation)(ann)
    url = reverse("chat:message-create", args=[conversation.pk])

    response = await async_ann.post(url, {"content": "far too long <here>"})

    html = response.content.decode()
    assert response.status_code == 422
    assert "at most 10 characters" in html
    assert ">far too long &lt;here&gt;</textarea>" in html
    assert 'aria-invalid="true"' in html
    assert await Message.objects.acount() == 0


@pytest.mark.anyio
@pytest.mark.django_db(transaction=True)
async def test_it_refuses_a_home_page_message_that_is_empty(async_ann):
    response = await async_ann.post(reverse("chat:home"), {"content": " "}, headers=HTMX)

    assert response.status_code == 422
    assert "Write a message first." in response.content.decode()
    assert await Conversation.objects.acount() == 0


@pytest.mark.anyio
@pytest.mark.django_db(transaction=True)
async def test_it_refuses_a_message_while_the_answer_still_streams(async_ann, ann):
    conversation = await sync_to_async(make_conversation)(ann, {"role": "user", "content": "q"})
    await sync_to_async(streaming_answer)(conversation)
    url = reverse("chat:message-create", args=[conversation.pk])

    response = await async_ann.post(url, {"content": "another"}, headers=HTMX)

    assert response.status_code == 409
    assert "Wait for the current answer to finish, or stop it." in response.content.decode()
    assert await conversation.messages.acount() == 2
