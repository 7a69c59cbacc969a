"""
The web pages: the conversation list, a conversation's transcript, posting to it, one
message's fragment. The cast (defined here): ann, who chats; ben, who must never see
ann's conversations.
"""

import asyncio
import datetime
import json
import re
import time

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.db import connections
from django.test import AsyncClient, Client
from django.urls import reverse
from django.utils import timezone

from chat import generation, limits
from chat.models import Conversation, Generation, Message
from tests.conftest import add_message
from tests.servers import free_port

HTMX = {"HX-Request": "true"}

pytestmark = pytest.mark.usefixtures("demo_model")


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
        add_message(conversation, **fields)
    return conversation


def streaming_answer(conversation: Conversation, content: str = "") -> Message:
    answer = add_message(conversation, role="assistant", status="streaming", content=content)
    Generation.objects.create(
        message=answer, conversation=conversation, model="demo", request={"messages": []}
    )
    return answer


def html_of(response) -> str:
    return response.content.decode()


def without_csrf(html: str) -> str:
    """Return html with each form's CSRF token blanked: the token is masked anew per render."""
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]*"', 'name="csrfmiddlewaretoken"', html)


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

    # Session, user, conversation, sidebar, transcript (with each answer's generation),
    # and every message's attachments in one.
    with django_assert_num_queries(6):
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
    assert f'data-stream-url="{answer.generation.get_stream_url()}?token=' in bubble_html
    assert f'data-cancel-url="{answer.generation.get_cancel_url()}"' in bubble_html
    assert f'data-message-url="{reverse("chat:message", args=[answer.pk])}"' in bubble_html
    assert 'aria-live="polite"' in bubble_html
    assert "Partial &lt;i&gt;text&lt;/i&gt; so far" in bubble_html
    assert "data-stop" in bubble_html


def test_it_tells_the_page_the_servers_heartbeat(client_ann, ann, settings):
    settings.CHAT_SSE_HEARTBEAT = 2.5
    conversation = make_conversation(ann, {"role": "user", "content": "Hello"})

    html = html_of(client_ann.get(conversation.get_absolute_url()))

    assert 'data-sse-heartbeat-ms="2500"' in html


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
    assert without_csrf(fragment) in without_csrf(page)


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


# The sidebar: day groups, search


def age(conversation: Conversation, **delta) -> None:
    Conversation.objects.filter(pk=conversation.pk).update(
        updated_at=timezone.now() - datetime.timedelta(**delta)
    )


def sidebar_groups(html: str) -> list[tuple[str, list[str]]]:
    """Return the sidebar's day groups as (heading, [titles])."""
    nav = re.search(r'<div id="convs".*?</div>\s*<div class="sidebar__foot">', html, re.S).group(0)
    parts = re.split(r'<h2 class="sidebar__label"[^>]*>([^<]+)</h2>', nav)[1:]
    return [
        (heading, re.findall(r'<a class="convs__link[^"]*"[^>]*>([^<]*)</a>', items))
        for heading, items in zip(parts[::2], parts[1::2], strict=True)
    ]


def test_it_groups_the_sidebar_by_day_newest_first(client_ann, ann):
    now = timezone.localtime()
    since_midnight = (now - now.replace(hour=0, minute=0, second=0, microsecond=0)).seconds
    for title, delta in [
        ("Long ago", {"days": 40}),
        ("Last week", {"days": 5}),
        ("Yesterday's", {"days": 1}),
        # Still today just after midnight too.
        ("Earlier today", {"seconds": min(300, since_midnight / 2)}),
    ]:
        age(make_conversation(ann, title=title), **delta)
    current = make_conversation(ann, title="Just now")

    html = html_of(client_ann.get(current.get_absolute_url()))

    assert sidebar_groups(html) == [
        ("Today", ["Just now", "Earlier today"]),
        ("Yesterday", ["Yesterday&#x27;s"]),
        ("Previous 7 days", ["Last week"]),
        ("Older", ["Long ago"]),
    ]


def test_it_searches_titles_and_message_text_without_javascript(client_ann, ann, ben):
    make_conversation(ann, title="Tide tables")
    make_conversation(ann, {"role": "assistant", "content": "The moon pulls the TIDES."}, title="Q")
    make_conversation(ann, {"role": "user", "content": "pancakes"}, title="Breakfast")
    make_conversation(ben, {"role": "user", "content": "tides"}, title="Ben's tides")

    html = html_of(client_ann.get(reverse("chat:home"), {"q": "  tide "}))

    assert sidebar_groups(html) == [("Today", ["Q", "Tide tables"])]
    assert re.search(r'<form class="search" role="search" method="get" action="/"', html)
    assert (
        '<input id="sidebar-search" class="search__input" type="search" name="q" value="tide"'
        in html
    )
    assert (
        '<label for="sidebar-search" class="visually-hidden">Search conversations</label>' in html
    )


def test_it_says_when_nothing_matches(client_ann, ann):
    make_conversation(ann, title="Tides")

    html = html_of(client_ann.get(reverse("chat:sidebar"), {"q": "<volcano>"}, headers=HTMX))

    assert html.strip().startswith('<div id="convs"')
    assert "No chat matches “&lt;volcano&gt;”." in html


def test_it_serves_the_list_alone_for_htmx_with_the_current_one_marked(client_ann, ann):
    current = make_conversation(ann, title="Mine")
    make_conversation(ann, title="Other")

    html = html_of(client_ann.get(reverse("chat:sidebar"), {"current": str(current.pk)}))

    assert "<html" not in html and "sidebar__foot" not in html
    link = re.search(r'<a class="convs__link is-current"[^>]*>([^<]*)</a>', html)
    assert link is not None and link.group(1) == "Mine"
    assert html.count("is-current") == 1


def test_it_reads_the_sidebar_in_one_query(client_ann, ann, django_assert_num_queries):
    for n in range(5):
        make_conversation(ann, {"role": "user", "content": "x"}, title=f"t{n}")

    # Session, user, the list.
    with django_assert_num_queries(3):
        response = client_ann.get(reverse("chat:sidebar"), {"q": "x"})

    assert response.status_code == 200


def test_it_marks_the_new_chat_shortcut(client_ann):
    html = html_of(client_ann.get(reverse("chat:home")))

    assert 'data-new-chat title="New chat (Ctrl+Shift+O)"' in html
    assert 'aria-keyshortcuts="Control+Shift+O Meta+Shift+O"' in html


# Renaming and deleting


def test_it_renames_without_javascript(client_ann, ann):
    conversation = make_conversation(ann, title="Old")

    response = client_ann.post(reverse("chat:rename", args=[conversation.pk]), {"title": "New"})

    assert response.status_code == 302
    assert response["Location"] == conversation.get_absolute_url()
    conversation.refresh_from_db()
    assert (conversation.title, conversation.auto_title) == ("New", False)


def test_it_renames_in_place_with_htmx_and_updates_the_page_title(client_ann, ann):
    conversation = make_conversation(ann, title="Old")
    url = reverse("chat:rename", args=[conversation.pk])

    response = client_ann.post(
        url, {"title": "Fresh <title>", "current": str(conversation.pk)}, headers=HTMX
    )

    html = html_of(response)
    assert response.status_code == 200
    assert html.strip().startswith('<div id="convs"')
    assert "Fresh &lt;title&gt;</a>" in html
    assert (
        '<h1 id="topbar-title" class="topbar__title" hx-swap-oob="true">Fresh &lt;title&gt;</h1>'
        in html
    )
    elsewhere = client_ann.post(url, {"title": "Again", "current": ""}, headers=HTMX)
    assert "hx-swap-oob" not in html_of(elsewhere)


def test_it_offers_an_inline_rename_form_for_each_conversation(client_ann, ann):
    conversation = make_conversation(ann, title="Plans")

    html = html_of(client_ann.get(conversation.get_absolute_url()))

    url = reverse("chat:rename", args=[conversation.pk])
    assert f'<form class="rename" method="post" action="{url}"' in html
    assert f'hx-post="{url}" hx-target="#convs" hx-swap="outerHTML"' in html
    assert f'<label for="rename-{conversation.pk}" class="rename__label">Rename</label>' in html
    assert 'name="title" value="Plans" maxlength="200" required' in html


def test_it_refuses_an_empty_title(client_ann, ann):
    conversation = make_conversation(ann, title="Keep")
    url = reverse("chat:rename", args=[conversation.pk])

    htmx = client_ann.post(url, {"title": "  "}, headers=HTMX)
    plain = client_ann.post(url, {"title": ""}, follow=True)

    assert htmx.status_code == 422
    assert "A title cannot be empty" in html_of(plain)
    conversation.refresh_from_db()
    assert conversation.title == "Keep"


def test_it_asks_before_deleting(client_ann, ann):
    conversation = make_conversation(ann, title="Doomed <b>")

    html = html_of(client_ann.get(reverse("chat:delete", args=[conversation.pk])))

    assert "Delete “Doomed &lt;b&gt;”?" in html
    assert f'<form method="post" action="{reverse("chat:delete", args=[conversation.pk])}"' in html
    assert f'<a class="btn" href="{conversation.get_absolute_url()}">Cancel</a>' in html
    assert Conversation.objects.filter(pk=conversation.pk).exists()


def test_it_deletes_and_says_so(client_ann, ann):
    conversation = make_conversation(ann, {"role": "user", "content": "x"}, title="Doomed")

    response = client_ann.post(reverse("chat:delete", args=[conversation.pk]), follow=True)

    assert response.redirect_chain == [(reverse("chat:home"), 302)]
    assert "Deleted “Doomed”." in html_of(response)
    assert not Conversation.objects.filter(pk=conversation.pk).exists()
    assert not Message.objects.exists()


@pytest.mark.parametrize(
    ("method", "name"),
    [
        ("post", "chat:rename"),
        ("get", "chat:delete"),
        ("post", "chat:delete"),
        ("post", "chat:regenerate"),
        ("post", "chat:edit"),
        ("get", "chat:export-markdown"),
        ("get", "chat:export-json"),
    ],
)
def test_it_keeps_other_users_away_from_a_conversation(client_ann, ben, method, name):
    theirs = make_conversation(ben, {"role": "user", "content": "ben's"}, title="Ben's")

    response = getattr(client_ann, method)(
        reverse(name, args=[theirs.pk]), {"title": "x", "content": "x"}
    )

    assert response.status_code == 404
    theirs.refresh_from_db()
    assert theirs.title == "Ben's"
    assert list(theirs.messages.values_list("content", flat=True)) == ["ben's"]


# Answering again: regenerate, retry, edit


def answered(owner: User, answer: dict | None = None) -> Conversation:
    return make_conversation(
        owner,
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "one"},
        {"role": "user", "content": "second"},
        {"role": "assistant", "content": "two", **(answer or {})},
    )


def test_it_offers_edit_on_every_question_and_regenerate_on_the_last_answer(client_ann, ann):
    conversation = answered(ann)

    html = html_of(client_ann.get(conversation.get_absolute_url()))

    assert html.count('class="msg__edit"') == 2
    assert html.index('class="msg__edit"') > html.index(">first</div>")
    assert html.count("data-regenerate") == 1
    assert html.index("data-regenerate") > html.index("<p>two</p>")
    assert f'action="{reverse("chat:regenerate", args=[conversation.pk])}"' in html
    assert "Regenerate" in html and "Retry" not in html


def test_it_offers_retry_on_a_failed_answer(client_ann, ann):
    failed = {"status": "error", "error_code": "upstream_error", "error_message": "Boom."}
    conversation = answered(ann, failed)

    html = html_of(client_ann.get(conversation.get_absolute_url()))

    error = html.index("Boom.")
    assert html.index("msg__btn--retry", error) > error
    assert re.search(r"data-regenerate>\s*<svg.*?</svg>\s*Retry\s*</button>", html, re.S)


def test_it_puts_a_copy_button_and_the_markdown_on_each_answer(client_ann, ann):
    conversation = make_conversation(
        ann, {"role": "assistant", "content": "**hi** <script>alert(1)</script>"}
    )

    html = html_of(client_ann.get(conversation.get_absolute_url()))

    assert 'data-copy-answer aria-label="Copy answer"' in html
    assert "<template data-markdown>**hi** &lt;script&gt;alert(1)&lt;/script&gt;</template>" in html


@pytest.mark.anyio
@pytest.mark.django_db(transaction=True)
async def test_it_regenerates_the_last_answer(async_ann, ann):
    conversation = await sync_to_async(answered)(ann)

    response = await async_ann.post(reverse("chat:regenerate", args=[conversation.pk]))

    assert response.status_code == 302
    await generation.wait_all()
    contents = [m.content async for m in conversation.messages.all()]
    assert contents[:4] == ["first", "one", "second", "two"]
    assert len(contents) == 5 and "> second" in contents[4]
    started = await Generation.objects.aget(conversation=conversation)
    assert started.regenerated  # so it bypasses the response cache


@pytest.mark.anyio
@pytest.mark.django_db(transaction=True)
async def test_it_returns_the_new_transcript_to_htmx(async_ann, ann, settings):
    settings.CHAT_DEMO_TOKEN_DELAY = 0.01  # still streaming when the transcript is drawn
    conversation = await sync_to_async(answered)(ann)

    response = await async_ann.post(
        reverse("chat:regenerate", args=[conversation.pk]), headers=HTMX
    )

    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in html
    assert html.count('class="msg msg--') == 4
    assert "<p>two</p>" not in html
    assert "msg--streaming" in html and "data-stream-url" in html


@pytest.mark.anyio
@pytest.mark.django_db(transaction=True)
async def test_it_edits_the_last_message_and_answers_it_again(async_ann, ann):
    conversation = await sync_to_async(answered)(ann)

    response = await async_ann.post(
        reverse("chat:edit", args=[conversation.pk]), {"content": "second, better"}
    )

    assert response.status_code == 302
    await generation.wait_all()
    contents = [m.content async for m in conversation.messages.all()]
    assert contents[:5] == ["first", "one", "second", "two", "second, better"]
    assert "> second, better" in contents[5]


@pytest.mark.anyio
@pytest.mark.django_db(transaction=True)
async def test_it_refuses_an_empty_edit(async_ann, ann):
    conversation = await sync_to_async(answered)(ann)

    response = await async_ann.post(
        reverse("chat:edit", args=[conversation.pk]), {"content": " "}, headers=HTMX
    )

    assert response.status_code == 422
    assert "Write a message first." in response.content.decode()
    assert await conversation.messages.acount() == 4


@pytest.mark.anyio
@pytest.mark.django_db(transaction=True)
async def test_it_refuses_to_regenerate_while_an_answer_streams(async_ann, ann):
    conversation = await sync_to_async(make_conversation)(ann, {"role": "user", "content": "q"})
    await sync_to_async(streaming_answer)(conversation)

    response = await async_ann.post(
        reverse("chat:regenerate", args=[conversation.pk]), headers=HTMX
    )

    assert response.status_code == 409
    assert "Wait for the current answer to finish" in response.content.decode()


@pytest.mark.anyio
@pytest.mark.django_db(transaction=True)
async def test_it_says_when_there_is_nothing_to_answer(async_ann, ann):
    conversation = await sync_to_async(make_conversation)(ann)

    response = await async_ann.post(reverse("chat:regenerate", args=[conversation.pk]))

    assert response.status_code == 409
    assert "no message of yours to answer" in response.content.decode()


# Limits


@pytest.fixture
def one_message_a_minute(settings, monkeypatch) -> None:
    """The real rate limit at one message a minute, the clock at a minute's first second."""
    settings.CHAT_RATE_LIMITS = {"minute": 1}
    start = (time.time() // 60 + 1) * 60
    monkeypatch.setattr(limits, "_now", lambda: start)


async def use_up_the_limit(client: AsyncClient) -> None:
    """Send the one message the limit allows, in a conversation of its own, and let it finish."""
    assert (await client.post(reverse("chat:home"), {"content": "first"})).status_code == 302
    await generation.wait_all()


LIMITED = "You can send 1 messages per minute. Try again later."


@pytest.mark.anyio
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("htmx", [True, False])
async def test_it_shows_a_limit_in_the_composer(async_ann, ann, one_message_a_minute, htmx):
    await use_up_the_limit(async_ann)
    conversation = await sync_to_async(make_conversation)(ann)
    url = reverse("chat:message-create", args=[conversation.pk])

    response = await async_ann.post(url, {"content": "more"}, headers=HTMX if htmx else {})

    html = response.content.decode()
    assert response.status_code == 429
    assert response["Retry-After"] == "60"
    errors = re.search(r'id="composer-errors".*?</div>', html, re.S) if not htmx else None
    assert LIMITED in (errors.group(0) if errors else html)
    if not htmx:
        assert ">more</textarea>" in html  # what was typed stays
    assert await conversation.messages.acount() == 0


@pytest.mark.anyio
@pytest.mark.django_db(transaction=True)
async def test_it_shows_a_limit_when_answering_again(async_ann, ann, one_message_a_minute):
    await use_up_the_limit(async_ann)
    conversation = await sync_to_async(answered)(ann)

    response = await async_ann.post(
        reverse("chat:regenerate", args=[conversation.pk]), headers=HTMX
    )

    assert response.status_code == 429
    assert response["Retry-After"] == "60"
    assert LIMITED in response.content.decode()
    assert await conversation.messages.acount() == 4


@pytest.mark.anyio
@pytest.mark.django_db(transaction=True)
async def test_it_leaves_no_empty_conversation_behind_a_limit(async_ann, one_message_a_minute):
    await use_up_the_limit(async_ann)

    response = await async_ann.post(reverse("chat:home"), {"content": "hi"}, headers=HTMX)

    assert response.status_code == 429
    assert response["Retry-After"] == "60"
    assert LIMITED in response.content.decode()
    assert await Conversation.objects.acount() == 1


@pytest.fixture
def event_log_down(settings) -> None:
    """The Redis event log, with no Redis where it points."""
    settings.CHAT_EVENT_LOG = "redis"
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there


@pytest.fixture
def redis_down(settings, event_log_down) -> None:
    """Redis as production uses it, for the event log and the cache, with no Redis there."""
    location = settings.REDIS_URL
    settings.CACHES = {
        "default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": location}
    }


async def refused_post(async_ann, ann, htmx: bool) -> Conversation:
    """Post "more" to a new conversation; assert the composer says the stream is down."""
    conversation = await sync_to_async(make_conversation)(ann)
    url = reverse("chat:message-create", args=[conversation.pk])

    response = await async_ann.post(url, {"content": "more"}, headers=HTMX if htmx else {})

    assert (response.status_code, response["Retry-After"]) == (503, "2")
    assert "Answers cannot stream right now; retry." in response.content.decode()
    return conversation


@pytest.mark.anyio
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("htmx", [True, False])
async def test_a_post_while_the_event_log_is_down_says_so_in_the_composer(
    async_ann, ann, event_log_down, htmx
):
    conversation = await refused_post(async_ann, ann, htmx)

    failed = await conversation.messages.filter(role="assistant").aget()
    assert (failed.status, failed.error_code) == ("error", "event_log_unavailable")
    assert not await Generation.objects.running().aexists()


@pytest.mark.anyio
@pytest.mark.django_db(transaction=True)
async def test_a_new_conversation_while_the_event_log_is_down_leaves_nothing_behind(
    async_ann, event_log_down
):
    response = await async_ann.post(reverse("chat:home"), {"content": "hi"}, headers=HTMX)

    assert response.status_code == 503
    assert "Answers cannot stream right now; retry." in response.content.decode()
    assert await Conversation.objects.acount() == 0


@pytest.mark.anyio
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("htmx", [True, False])
async def test_a_post_while_redis_is_down_says_so_in_the_composer_and_saves_nothing(
    async_ann, ann, redis_down, htmx
):
    conversation = await refused_post(async_ann, ann, htmx)

    assert not await conversation.messages.filter(content="more").aexists()


def test_it_swaps_a_429_into_the_composer_errors(client_ann, ann):
    html = html_of(client_ann.get(answered(ann).get_absolute_url()))

    assert 'hx-status:429="target:#composer-errors swap:innerHTML"' in html
    assert "style=" not in html
    assert "<script>" not in html and "hx-on" not in html


# The model and the system prompt


def test_it_labels_models_from_their_configuration(client_ann, settings):
    settings.CHAT_MODELS = ["demo", "llama3.2", "gpt-x"]
    settings.CHAT_MODEL_ENDPOINTS = {"llama3.2": {"label": "Llama 3.2 (local)", "base_url": ""}}

    html = html_of(client_ann.get(reverse("chat:home")))

    assert '<option value="demo" selected>Offline demo model</option>' in html
    assert '<option value="llama3.2">Llama 3.2 (local)</option>' in html
    assert '<option value="gpt-x">gpt-x</option>' in html
    assert '<label for="composer-system" class="visually-hidden">System prompt</label>' in html


@pytest.mark.anyio
@pytest.mark.django_db(transaction=True)
async def test_it_starts_a_conversation_with_a_model_and_a_system_prompt(async_ann, ann, settings):
    settings.CHAT_MODELS = ["demo", "gpt-x"]

    response = await async_ann.post(
        reverse("chat:home"),
        {"content": "Hi", "model": "demo", "system_prompt": "  Answer in French.  "},
    )

    assert response.status_code == 302
    conversation = await Conversation.objects.aget(owner=ann)
    assert (conversation.model, conversation.system_prompt) == ("demo", "Answer in French.")
    started = await Generation.objects.aget(conversation=conversation)
    assert started.request["messages"][0] == {"role": "system", "content": "Answer in French."}


@pytest.mark.anyio
@pytest.mark.django_db(transaction=True)
async def test_it_refuses_a_model_that_is_not_configured(async_ann, settings):
    response = await async_ann.post(reverse("chat:home"), {"content": "Hi", "model": "gpt-evil"})

    assert response.status_code == 422
    assert await Conversation.objects.acount() == 0


def test_it_shows_the_model_and_the_system_prompt_on_the_conversation(client_ann, ann):
    conversation = make_conversation(ann, title="Plans")
    Conversation.objects.filter(pk=conversation.pk).update(system_prompt="Be <brief>.")

    html = html_of(client_ann.get(conversation.get_absolute_url()))

    assert '<span class="badge badge--demo" title="Model: demo">Offline demo model</span>' in html
    assert html.count("Offline demo model</span>") == 1
    assert '<p class="sysprompt__text">Be &lt;brief&gt;.</p>' in html


# Reasoning and tool calls, readable without JavaScript

THE_CALL = {
    "id": "call_1",
    "name": "calculator",
    "arguments": {"expression": "6*7"},
    "result": {"value": 42},
}
STOPPED_CALL = {"id": "call_2", "name": "slow_steps", "arguments": {}}


def test_a_finished_answer_shows_its_reasoning_closed_and_its_tool_cards(client_ann, ann):
    conversation = make_conversation(
        ann,
        {"role": "user", "content": "6*7?"},
        {
            "role": "assistant",
            "content": "It is **42**.",
            "reasoning": "<b>multiply</b>",
            "thinking_seconds": 3.4,
            "tool_calls": [THE_CALL, STOPPED_CALL],
        },
    )

    html = client_ann.get(conversation.get_absolute_url()).content.decode()

    assert '<details class="thinking" data-thinking>' in html
    assert "Thought for 3 s" in html
    assert "&lt;b&gt;multiply&lt;/b&gt;" in html
    assert html.index("thinking__text") < html.index("toolcard") < html.index("<strong>42</strong>")
    assert 'class="toolcard toolcard--done"' in html
    assert "&quot;value&quot;: 42" in html
    assert 'class="toolcard toolcard--stopped"' in html
    assert "Stopped before the tool finished." in html


def test_an_answer_without_reasoning_or_tools_shows_neither(client_ann, ann):
    conversation = make_conversation(
        ann, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}
    )

    html = client_ann.get(conversation.get_absolute_url()).content.decode()

    assert "thinking" not in html and "toolcard" not in html


# Export


def test_it_exports_a_conversation_as_markdown(client_ann, ann):
    conversation = make_conversation(
        ann,
        {"role": "user", "content": "Why tides?"},
        {"role": "assistant", "content": "The **moon**.", "status": "cancelled"},
        title="Tides: why?",
    )
    Conversation.objects.filter(pk=conversation.pk).update(system_prompt="Be brief.")

    response = client_ann.get(reverse("chat:export-markdown", args=[conversation.pk]))

    assert response.status_code == 200
    assert response["Content-Type"] == "text/markdown; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="tides-why.md"'
    text = response.content.decode()
    assert text.startswith("# Tides: why?\n\nModel: Offline demo model")
    assert "## System prompt\n\nBe brief.\n" in text
    assert "## You\n\nWhy tides?\n\n## Assistant\n\nThe **moon**.\n\n*(Stopped)*" in text


def test_the_export_has_the_reasoning_and_the_tool_calls(client_ann, ann):
    conversation = make_conversation(
        ann,
        {"role": "user", "content": "6*7?"},
        {
            "role": "assistant",
            "content": "42.",
            "reasoning": "Multiply.\nCarefully.",
            "tool_calls": [THE_CALL, {**STOPPED_CALL, "error": {"code": "x", "message": "Bad."}}],
        },
    )

    markdown = client_ann.get(reverse("chat:export-markdown", args=[conversation.pk]))
    exported = client_ann.get(reverse("chat:export-json", args=[conversation.pk])).json()

    assert (
        "## Assistant\n\n> **Thinking**\n>\n> Multiply.\n> Carefully.\n\n"
        '- Tool `calculator` with `{"expression": "6*7"}`: `{"value": 42}`\n'
        "- Tool `slow_steps` with `{}`: failed: Bad.\n\n42."
    ) in markdown.content.decode()
    answer = exported["messages"][1]
    assert answer["reasoning"] == "Multiply.\nCarefully."
    assert answer["tool_calls"][0] == THE_CALL


def test_it_exports_a_conversation_as_json(client_ann, ann):
    conversation = make_conversation(
        ann,
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello", "status": "error", "error_code": "x"},
        title="",
    )

    response = client_ann.get(reverse("chat:export-json", args=[conversation.pk]))

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="chat.json"'
    data = json.loads(response.content)
    assert data["id"] == str(conversation.pk)
    assert data["model"] == "demo"
    assert [(m["role"], m["content"]) for m in data["messages"]] == [
        ("user", "Hi"),
        ("assistant", "Hello"),
    ]
    assert data["messages"][1]["error"]["code"] == "x"
