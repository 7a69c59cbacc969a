"""
Who may do what, URL by URL: every named route of the project, with each method it
accepts, as anonymous, as bob (another user), as staff and as alice, who owns every
object in the world. Staff see other people's things in the admin only.

A new URL without a row in MATRIX fails test_the_matrix_covers_every_named_route.
"""

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from urllib.parse import urlencode

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import Group, User
from django.contrib.contenttypes.models import ContentType
from django.db import connections
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from chat import api_keys, attachments, generation
from chat.models import (
    ApiKey,
    Attachment,
    Conversation,
    Feedback,
    Generation,
    Message,
    ShareLink,
    Usage,
)
from tests import attachment_files
from tests.asgi_client import AsgiClient, Response
from tests.conftest import finished_exchange, session_cookie

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("demo_model"),
]

# What a response is, for the table: a status, or one of these kinds of 302.
LOGIN = "302 to login"
ADMIN_LOGIN = "302 to admin login"
REDIRECT = "302 elsewhere"

type Outcome = int | str


def page(alice: Outcome, *, others: Outcome = 404) -> dict[str, Outcome]:
    return {"anonymous": LOGIN, "bob": others, "staff": others, "alice": alice}


def api(alice: Outcome, *, others: Outcome = 404) -> dict[str, Outcome]:
    return {"anonymous": 401, "bob": others, "staff": others, "alice": alice}


def account(anonymous: Outcome, *, users: Outcome = REDIRECT) -> dict[str, Outcome]:
    return {"anonymous": anonymous, "bob": users, "staff": users, "alice": users}


def admin(staff: Outcome) -> dict[str, Outcome]:
    return {"anonymous": ADMIN_LOGIN, "bob": ADMIN_LOGIN, "alice": ADMIN_LOGIN, "staff": staff}


def form(**fields: str) -> tuple[str, bytes]:
    return "application/x-www-form-urlencoded", urlencode(fields).encode()


def json(text: str) -> tuple[str, bytes]:
    return "application/json", text.encode()


@dataclass(frozen=True)
class Call:
    expected: dict[str, Outcome]
    # The same valid body for everyone: a refusal is for who asks, never for what.
    body: tuple[str, bytes] = ("", b"")


@dataclass(frozen=True)
class Route:
    calls: dict[str, Call]  # by method
    kwargs: dict[str, str] = field(default_factory=dict)  # URL argument -> key of the world


CONVERSATION = {"pk": "conversation"}
KEY = {"pk": "key"}
SHARE = {"pk": "share"}
ANSWER = {"pk": "answer"}
UI_CHAT = {"chat_id": "ui_chat"}
UI_MESSAGE = (
    '{"id": "alices-chat", "trigger": "submit-message", "messages": '
    '[{"id": "m1", "role": "user", "parts": [{"type": "text", "text": "Hi"}]}]}'
)
KEY_NAME = '{"name": "k"}'
# In a body, replaced by the id of alice's answer.
ANSWER_ID = "ANSWER_ID"
ATTACHMENT = {"pk": "attachment"}
SHARED_ATTACHMENT = {"token": "share_token", "pk": "shared_attachment"}
UPLOAD = attachment_files.multipart("notes.txt", b"Some notes")[::-1]


def admin_model(name: str, target: str, *, add: int = 200, change: int = 200) -> dict[str, Route]:
    """The five admin views of one model; `change` is what a POST to its change page gets."""
    on_object = {"object_id": target}
    return {
        f"admin:{name}_changelist": Route({"GET": Call(admin(200))}),
        f"admin:{name}_add": Route({"GET": Call(admin(add)), "POST": Call(admin(add), form())}),
        f"admin:{name}_change": Route(
            {"GET": Call(admin(200)), "POST": Call(admin(change), form())}, on_object
        ),
        f"admin:{name}_history": Route({"GET": Call(admin(200))}, on_object),
        f"admin:{name}_delete": Route(
            {"GET": Call(admin(200)), "POST": Call(admin(REDIRECT), form(post="yes"))}, on_object
        ),
    }


MATRIX: dict[str, Route] = {
    # For load balancers: open to anyone, saying nothing of anyone.
    "healthz": Route({"GET": Call(account(200, users=200)), "HEAD": Call(account(200, users=200))}),
    "readyz": Route({"GET": Call(account(200, users=200)), "HEAD": Call(account(200, users=200))}),
    # Pages and htmx fragments.
    "chat:home": Route(
        {
            "GET": Call(page(200, others=200)),
            "POST": Call(page(REDIRECT, others=REDIRECT), form(content="Hi")),
        }
    ),
    "chat:sidebar": Route({"GET": Call(page(200, others=200))}),
    "chat:usage": Route({"GET": Call(page(200, others=200))}),
    "chat:keys": Route(
        {"GET": Call(page(200, others=200)), "POST": Call(page(201, others=201), form(name="k"))}
    ),
    "chat:key-revoke": Route({"POST": Call(page(REDIRECT), form())}, KEY),
    "chat:conversation": Route({"GET": Call(page(200))}, CONVERSATION),
    "chat:message-create": Route({"POST": Call(page(REDIRECT), form(content="Hi"))}, CONVERSATION),
    "chat:regenerate": Route({"POST": Call(page(REDIRECT), form())}, CONVERSATION),
    "chat:edit": Route({"POST": Call(page(REDIRECT), form(content="Hi again"))}, CONVERSATION),
    # The world's answer is finished, not cut off: alice is told it cannot go on.
    "chat:continue": Route({"POST": Call(page(409), form())}, CONVERSATION),
    "chat:switch": Route({"POST": Call(page(REDIRECT), form(message=ANSWER_ID))}, CONVERSATION),
    "chat:rename": Route({"POST": Call(page(REDIRECT), form(title="Renamed"))}, CONVERSATION),
    "chat:delete": Route(
        {"GET": Call(page(200)), "POST": Call(page(REDIRECT), form())}, CONVERSATION
    ),
    "chat:export-markdown": Route({"GET": Call(page(200))}, CONVERSATION),
    "chat:export-json": Route({"GET": Call(page(200))}, CONVERSATION),
    "chat:attachment": Route({"GET": Call(page(200))}, ATTACHMENT),
    "chat:attachment-thumbnail": Route({"GET": Call(page(200))}, ATTACHMENT),
    # A share link's files: anyone with the link, whoever they are.
    "chat:shared-attachment": Route({"GET": Call(account(200, users=200))}, SHARED_ATTACHMENT),
    "chat:shared-attachment-thumbnail": Route(
        {"GET": Call(account(200, users=200))}, SHARED_ATTACHMENT
    ),
    "chat:message": Route({"GET": Call(page(200))}, ANSWER),
    "chat:message-feedback": Route({"POST": Call(page(REDIRECT), form(rating="down"))}, ANSWER),
    "chat:shares": Route(
        {"GET": Call(page(200)), "POST": Call(page(REDIRECT), form())}, CONVERSATION
    ),
    "chat:share-revoke": Route({"POST": Call(page(REDIRECT), form())}, SHARE),
    # A share link's page: anyone with the token reads it, logged in or not.
    "shared": Route(
        {"GET": Call(account(200, users=200)), "HEAD": Call(account(200, users=200))},
        {"token": "share_token"},
    ),
    # Accounts: open to anyone; a logged-in user is sent home.
    "login": Route(
        {"GET": Call(account(200)), "POST": Call(account(200), form(username="x", password="y"))}
    ),
    "logout": Route({"POST": Call(account(REDIRECT))}),
    "signup": Route({"GET": Call(account(200)), "POST": Call(account(422), form())}),
    # The JSON API, the stream and the stateless completions.
    "api:conversations": Route(
        {"GET": Call(api(200, others=200)), "POST": Call(api(201, others=201), json("{}"))}
    ),
    "api:conversation": Route(
        {
            "GET": Call(api(200)),
            "PATCH": Call(api(200), json('{"title": "Renamed"}')),
            "DELETE": Call(api(204)),
        },
        CONVERSATION,
    ),
    "api:messages": Route({"POST": Call(api(202), json('{"content": "Hi"}'))}, CONVERSATION),
    "api:regenerate": Route({"POST": Call(api(202), json("{}"))}, CONVERSATION),
    "api:continue": Route({"POST": Call(api(409))}, CONVERSATION),
    "api:switch": Route(
        {"POST": Call(api(200), json(f'{{"message_id": "{ANSWER_ID}"}}'))}, CONVERSATION
    ),
    "api:generation-stream": Route({"GET": Call(api(200))}, {"pk": "generation"}),
    "api:generation-cancel": Route({"POST": Call(api(202))}, {"pk": "generation"}),
    "api:completions": Route({"POST": Call(api(200, others=200), json('{"prompt": "Hi"}'))}),
    "api:keys": Route(
        {"GET": Call(api(200, others=200)), "POST": Call(api(201, others=201), json(KEY_NAME))}
    ),
    "api:key": Route({"DELETE": Call(api(204))}, KEY),
    "api:shares": Route({"GET": Call(api(200)), "POST": Call(api(201), json("{}"))}, CONVERSATION),
    "api:share": Route({"DELETE": Call(api(204))}, SHARE),
    "api:message-feedback": Route(
        {
            "GET": Call(api(200)),
            "PUT": Call(api(200), json('{"rating": "down", "comment": "Vague."}')),
            "DELETE": Call(api(204)),
        },
        ANSWER,
    ),
    "api:attachments": Route({"POST": Call(api(201, others=201), UPLOAD)}),
    "api:attachment": Route({"DELETE": Call(api(204))}, ATTACHMENT),
    "v1:models": Route({"GET": Call(api(200, others=200))}),
    # The AI SDK's chat: alice's chat id is hers; bob's own post makes him a new chat.
    "api:ui-chat": Route({"POST": Call(api(200), json(UI_MESSAGE))}),
    "api:ui-chat-stream": Route({"GET": Call(api(204, others=204))}, UI_CHAT),
    "api:ui-chat-messages": Route({"GET": Call(api(200))}, UI_CHAT),
    "api:ui-chat-stop": Route({"POST": Call(api(202))}, UI_CHAT),
    "v1:chat-completions": Route(
        {
            "POST": Call(
                api(200, others=200),
                json('{"model": "demo", "messages": [{"role": "user", "content": "Hi"}]}'),
            )
        }
    ),
    "api:chat-completions": Route(
        {
            "POST": Call(
                api(200, others=200), json('{"messages": [{"role": "user", "content": "Hi"}]}')
            )
        }
    ),
    # The admin: staff only, and there they see everyone's things.
    "admin:index": Route({"GET": Call(admin(200))}),
    "admin:app_list": Route({"GET": Call(admin(200))}, {"app_label": "app"}),
    "admin:login": Route({"GET": Call({**account(200, users=200), "staff": REDIRECT})}),
    "admin:logout": Route({"POST": Call(account(REDIRECT))}),
    "admin:password_change": Route({"GET": Call(admin(200))}),
    "admin:password_change_done": Route({"GET": Call(admin(200))}),
    "admin:autocomplete": Route({"GET": Call(admin(403))}),
    "admin:jsi18n": Route({"GET": Call(admin(200))}),
    "admin:view_on_site": Route(
        {"GET": Call(admin(REDIRECT))},
        {"content_type_id": "conversation_type", "object_id": "conversation"},
    ),
    "admin:auth_user_password_change": Route({"GET": Call(admin(200))}, {"id": "alice"}),
    **admin_model("auth_user", "alice"),
    **admin_model("auth_group", "group"),
    **admin_model("chat_conversation", "conversation", add=403),
    **admin_model("chat_generation", "generation", add=403, change=403),
    **admin_model("chat_usage", "usage", add=403, change=403),
    **admin_model("chat_apikey", "key", add=403, change=403),
    **admin_model("chat_sharelink", "share", add=403, change=403),
    **admin_model("chat_feedback", "feedback", add=403, change=403),
    **admin_model("chat_attachment", "attachment", add=403, change=403),
}

# The world's objects that belong to alice: bob asking for them must look like a miss.
ALICES = {"conversation", "answer", "generation", "key", "ui_chat", "share", "attachment"}


def named_routes(patterns: list, namespace: str = "") -> Iterator[str]:
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            inner = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
            yield from named_routes(pattern.url_patterns, inner)
        elif isinstance(pattern, URLPattern) and pattern.name:
            yield namespace + pattern.name


def cells() -> list[tuple[str, str]]:
    return [(name, method) for name, route in MATRIX.items() for method in route.calls]


@pytest.fixture
def world(alice: User, bob: User) -> dict[str, str]:
    """Alice's finished exchange, her usage, a group; staff; and the ids of all of it."""
    staff = User.objects.create_superuser("staff", "staff@example.com", "pw")
    conversation, answer, finished = finished_exchange(alice)
    usage = Usage.objects.create(
        user=alice, model="demo", prompt_tokens=2, completion_tokens=3, generation=finished
    )
    share = ShareLink.objects.create(conversation=conversation, leaf=answer, token="s" * 43)
    given = Feedback.objects.create(message=answer, rating="up")
    return {
        "conversation": str(conversation.pk),
        "answer": str(answer.pk),
        "generation": str(finished.pk),
        "usage": str(usage.pk),
        "share": str(share.pk),
        "share_token": share.token,
        "feedback": str(given.pk),
        "key": str(api_keys.create(alice, "laptop")[0].pk),
        "ui_chat": Conversation.objects.create(
            owner=alice, model="demo", client_id="alices-chat"
        ).client_id,
        "alice": str(alice.pk),
        "group": str(Group.objects.create(name="editors").pk),
        "conversation_type": str(ContentType.objects.get_for_model(Conversation).pk),
        "app": "chat",
        **shared_attachment(conversation, answer),
        "attachment": str(image(alice).pk),
        **{f"{user.username}-session": session_cookie(user) for user in (alice, bob, staff)},
    }


def image(owner: User) -> Attachment:
    data = attachment_files.image()
    return attachments.store(owner, "photo.png", data, attachments.check(data))


def shared_attachment(conversation: Conversation, answer: Message) -> dict[str, str]:
    """An image sent with the question of a shared branch (question, answer)."""
    question = conversation.messages.get(role="user")
    Message.objects.filter(pk=answer.pk).update(parent=question)
    sent = image(conversation.owner)
    Attachment.objects.filter(pk=sent.pk).update(message=question)
    link = ShareLink.objects.create(conversation=conversation, leaf=answer, token="t" * 43)
    return {"share_token": link.token, "shared_attachment": str(sent.pk)}


@pytest.fixture
async def clients(world: dict[str, str]) -> AsyncIterator[dict[str, AsgiClient]]:
    yield {
        "anonymous": AsgiClient(),
        **{role: AsgiClient(world[f"{role}-session"]) for role in ("alice", "bob", "staff")},
    }
    await generation.wait_all()
    await sync_to_async(connections.close_all)()


def snapshot() -> list[tuple]:
    """Every row a request could change, in full."""
    return [
        tuple(model.objects.order_by("pk").values_list())
        for model in (
            User,
            Group,
            Conversation,
            Message,
            Generation,
            Usage,
            ApiKey,
            ShareLink,
            Feedback,
            Attachment,
        )
    ]


async def call(
    client: AsgiClient, method: str, path: str, body: tuple[str, bytes], world: dict[str, str]
) -> Response:
    content_type, data = body
    data = data.replace(ANSWER_ID.encode(), world["answer"].encode())
    headers = (
        {"Content-Type": content_type, "Content-Length": str(len(data))} if content_type else {}
    )
    return await client.request(method, path, body=data, headers=headers)


def outcome(response: Response) -> Outcome:
    if response.status != 302:
        return response.status
    location = response.headers["location"]
    if location.startswith("/accounts/login/?next="):
        return LOGIN
    if location.startswith("/admin/login/?next="):
        return ADMIN_LOGIN
    return REDIRECT


def is_refusal(expected: Outcome) -> bool:
    return expected in (LOGIN, ADMIN_LOGIN) or (isinstance(expected, int) and expected >= 400)


def path_of(name: str, world: dict[str, str], replace: dict[str, str] | None = None) -> str:
    ids = {**world, **(replace or {})}
    return reverse(name, kwargs={arg: ids[key] for arg, key in MATRIX[name].kwargs.items()})


def test_the_matrix_covers_every_named_route():
    assert set(named_routes(get_resolver().url_patterns)) == set(MATRIX)


@pytest.mark.parametrize(("name", "method"), cells())
async def test_each_role_gets_exactly_its_status_and_a_refusal_changes_nothing(
    name, method, world, clients
):
    call_ = MATRIX[name].calls[method]
    path = path_of(name, world)
    seen = {}
    # Refusals first: what the others do must not depend on what alice did.
    for role in sorted(call_.expected, key=lambda role: not is_refusal(call_.expected[role])):
        before = await sync_to_async(snapshot)()
        response = await call(clients[role], method, path, call_.body, world)
        await response.body()  # to its end: a stream finishes, its answer is stored
        seen[role] = outcome(response)
        if is_refusal(call_.expected[role]):
            assert await sync_to_async(snapshot)() == before, f"{role} changed the database"

    assert seen == call_.expected


@pytest.mark.parametrize(
    ("name", "method"),
    [
        (name, method)
        for name, method in cells()
        if set(MATRIX[name].kwargs.values()) & ALICES
        and not name.startswith("admin:")
        and MATRIX[name].calls[method].expected["bob"] == 404
    ],
)
async def test_another_users_id_is_indistinguishable_from_a_missing_one(
    name, method, world, clients
):
    call_ = MATRIX[name].calls[method]
    missing = {key: str(uuid.uuid4()) for key in ALICES}

    foreign = await call(clients["bob"], method, path_of(name, world), call_.body, world)
    absent = await call(clients["bob"], method, path_of(name, world, missing), call_.body, world)

    assert foreign.status == absent.status == 404
    assert foreign.headers["content-type"] == absent.headers["content-type"]
    assert await foreign.body() == await absent.body()


@pytest.mark.parametrize(
    ("name", "method"),
    [(name, method) for name, method in cells() if method not in ("GET", "HEAD")],
)
async def test_every_state_changing_request_needs_the_csrf_token(name, method, world, clients):
    call_ = MATRIX[name].calls[method]
    client = clients["staff" if name.startswith("admin:") else "alice"]
    client.cookies.pop("csrftoken")  # the header alone, without its cookie, proves nothing
    before = await sync_to_async(snapshot)()

    response = await call(client, method, path_of(name, world), call_.body, world)

    assert response.status == 403
    assert await sync_to_async(snapshot)() == before
