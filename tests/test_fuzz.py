"""
Bad input never produces a 500. Hypothesis throws arbitrary JSON, bytes that are not
UTF-8, huge and deeply nested bodies, control characters, lone surrogates, wrong
Content-Types and garbage headers at every API endpoint. Every answer is either a valid
success (the input happened to be acceptable) or a 4xx with the documented error shape,
and a refused request leaves the database exactly as it was.

Alice's answers come from the offline demo model; her rate limit bounds how many start.
"""

import json
import uuid
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from chat import attachments, generation
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
from tests.asgi_client import AsgiClient, Response, parse_events
from tests.conftest import finished_exchange

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("demo_model"),
]

FUZZ = settings(
    max_examples=40,
    derandomize=True,  # the same examples on every run, in CI too
    database=None,
    deadline=None,
    # Alice and her client are made once per test, not per example, on purpose: each
    # example makes its own conversation and compares the database around its request.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

ENDPOINTS = [
    ("POST", "/api/conversations/"),
    ("GET", "/api/conversations/{conversation}/"),
    ("PATCH", "/api/conversations/{conversation}/"),
    ("DELETE", "/api/conversations/{conversation}/"),
    ("POST", "/api/conversations/{conversation}/messages/"),
    ("POST", "/api/conversations/{conversation}/regenerate"),
    ("POST", "/api/conversations/{conversation}/continue"),
    ("POST", "/api/conversations/{conversation}/switch"),
    ("GET", "/api/generations/{generation}/stream"),
    ("POST", "/api/generations/{generation}/cancel"),
    ("POST", "/api/completions"),
    ("POST", "/api/chat/completions"),
    ("GET", "/api/keys/"),
    ("POST", "/api/keys/"),
    ("DELETE", "/api/keys/{key}/"),
    ("GET", "/api/conversations/{conversation}/shares/"),
    ("POST", "/api/conversations/{conversation}/shares/"),
    ("DELETE", "/api/shares/{share}/"),
    ("GET", "/api/messages/{answer}/feedback"),
    ("PUT", "/api/messages/{answer}/feedback"),
    ("DELETE", "/api/messages/{answer}/feedback"),
    ("GET", "/v1/models"),
    ("POST", "/api/ui/chat"),
    ("GET", "/api/ui/chat/{ui_chat}/stream"),
    ("POST", "/api/ui/chat/{ui_chat}/stop"),
    ("GET", "/api/ui/chat/{ui_chat}/messages"),
    ("POST", "/v1/chat/completions"),
    ("POST", "/api/attachments/"),
    ("DELETE", "/api/attachments/{attachment}/"),
]
FIELDS = ["title", "model", "system_prompt", "content", "prompt", "messages", "role"]
FIELDS += ["temperature", "max_tokens", "cache", "name", "expires_in_days"]
FIELDS += ["stream", "stream_options", "n", "tools", "tool_calls", "max_completion_tokens"]
FIELDS += ["id", "trigger", "parts", "messageId", "parent_id", "message_id", "rating", "comment"]

# Text as an attacker writes it: control characters, lone surrogates (sent as "\ud800"
# escapes, which JSON allows), terminal and bidi controls, words the API knows, and one
# character past the default CHAT_MAX_MESSAGE_CHARS.
texts = (
    st.text(max_size=30)
    | st.sampled_from(["", " \n\t", "\x00", "a\x00b", "\ud800", "a\udfffb", "\x1b[2J", "\u202e"])
    | st.sampled_from(["demo", "user", "system", "assistant", "up", "down"])
    | st.just("x" * 20_001)
)
scalars = st.none() | st.booleans() | st.integers() | st.floats() | texts
keys = st.sampled_from(FIELDS) | st.text(max_size=8)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=12,
)
messages = st.lists(
    st.dictionaries(st.sampled_from(["role", "content"]) | texts, json_values, max_size=3),
    max_size=4,
)


def dump(value: Any) -> bytes:
    # ensure_ascii: NaN, Infinity and lone surrogates go as JSON (Python) reads them.
    return json.dumps(value).encode()


def nested(depth: int) -> bytes:
    return b'{"content": ' + b"[" * depth + b"]" * depth + b"}"


# Half the bodies are objects with the API's own field names, any of them, holding anything.
objects = st.fixed_dictionaries(
    {},
    optional={name: (messages if name == "messages" else texts) | json_values for name in FIELDS},
)
bodies = objects.map(dump) | st.one_of(
    json_values.map(dump),
    st.binary(max_size=100),
    st.integers(10, 100_000).map(nested),
)
header_texts = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=40)
headers = st.fixed_dictionaries(
    {},
    optional={
        "Content-Type": st.sampled_from(
            [
                "application/json",
                "application/json; charset=utf-16",
                "text/plain",
                "application/x-www-form-urlencoded",
                "multipart/form-data; boundary=x",
            ]
        )
        | header_texts,
        "Accept": st.sampled_from(["text/event-stream", "application/json", "*/*"]) | header_texts,
        "Last-Event-ID": st.integers(-5, 2**70).map(str)
        | st.sampled_from(["", " 1", "1\t", "١", "0x1", "1e3", "-0", "+1"])
        | header_texts,
        "X-Request-ID": header_texts,
        "Authorization": st.sampled_from(["Bearer ", "Bearer sk-chat-", "bearer x", "Basic x"])
        | header_texts.map(lambda text: f"Bearer {text}"),
    },
)
queries = st.dictionaries(
    st.sampled_from(["last_event_id", "render", "q"]), header_texts, max_size=3
).map(urlencode) | st.sampled_from(["%zz", "last_event_id=%ff%fe", "render=blocks&render"])


def exchange(owner: User) -> dict[str, str]:
    """A conversation of the owner's with one finished answer: the endpoints' targets."""
    conversation, answer, finished = finished_exchange(owner)
    # Made directly: each example makes one, past the number a user may make.
    key = ApiKey.objects.create(user=owner, name="fuzzed", key_hash=uuid.uuid4().hex)
    conversation.client_id = f"fuzzed-{uuid.uuid4().hex}"
    conversation.save(update_fields=["client_id"])
    share = ShareLink.objects.create(
        conversation=conversation, leaf=answer, token=uuid.uuid4().hex + uuid.uuid4().hex[:11]
    )
    return {
        "answer": str(answer.pk),
        "share": str(share.pk),
        "conversation": str(conversation.pk),
        "generation": str(finished.pk),
        "key": str(key.pk),
        "ui_chat": conversation.client_id,
        "attachment": str(attachments.store(owner, "a.txt", b"a", attachments.check(b"a")).pk),
    }


def snapshot() -> list[tuple]:
    return [
        tuple(model.objects.order_by("pk").values_list())
        for model in (
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


async def send(
    api: AsgiClient, method: str, path: str, body: bytes, headers: dict[str, str]
) -> tuple[Response, bytes, bool]:
    """Send one request; return the response, its whole body, and whether it was refused."""
    await generation.wait_all()  # no earlier answer may write while we compare
    before = await sync_to_async(snapshot)()
    # A real server always passes the length on; Django checks it against its upload limit.
    response = await api.request(
        method, path, body=body, headers={"Content-Length": str(len(body)), **headers}
    )
    content = await response.body()
    refused = response.status >= 400
    if refused:
        assert await sync_to_async(snapshot)() == before, "a refused request changed the database"
    return response, content, refused


def assert_documented(response: Response, content: bytes, path: str = "/api/") -> None:
    """A 4xx with the error shape, or a success that is what the API promises."""
    assert response.status < 500, content[:500]
    if path.startswith("/v1/"):
        assert_openai_documented(response, content)
    elif response.status >= 400:
        assert response.headers["content-type"] == "application/json", content[:500]
        error = json.loads(content)["error"]
        assert set(error) == {"code", "message"}
        assert isinstance(error["code"], str) and error["code"]
        assert isinstance(error["message"], str) and error["message"]
    elif response.headers.get("content-type", "").startswith("text/event-stream"):
        if path.startswith("/api/ui/"):  # the AI SDK's stream
            assert content.rstrip().endswith(b"data: [DONE]"), content[-500:]
            return
        events, _ = parse_events(content)
        assert events[-1].event in ("done", "error")
    elif response.status != 204:
        assert isinstance(json.loads(content), dict)


def assert_openai_documented(response: Response, content: bytes) -> None:
    """OpenAI's error object, or OpenAI's stream (to [DONE] or an error) or object."""
    if response.status >= 400:
        error = json.loads(content)["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert isinstance(error["message"], str) and error["message"]
    elif response.headers.get("content-type", "").startswith("text/event-stream"):
        last = content.rstrip().rsplit(b"\n\n", 1)[-1]
        assert last == b"data: [DONE]" or b'"error"' in last, content[-500:]
    else:
        assert json.loads(content)["object"] in ("list", "chat.completion")


@pytest.mark.parametrize(("method", "template"), ENDPOINTS)
@FUZZ
@given(body=bodies, headers=headers, query=queries)
@example(body=nested(100_000), headers={}, query="")
@example(body=b'{"content": "x' + b"y" * 3_000_000 + b'"}', headers={}, query="")
async def test_any_input_is_answered_with_a_success_or_a_documented_4xx_that_changes_nothing(
    api, alice, method, template, body, headers, query
):
    path = template.format(**await sync_to_async(exchange)(alice))

    response, content, _ = await send(api, method, f"{path}?{query}", body, headers)

    event(f"status {response.status}")  # seen with --hypothesis-show-statistics
    assert_documented(response, content, path)


# Whatever a user may type: any non-blank text a database can store, within the limit.
acceptable = st.text(st.characters(exclude_characters="\x00"), min_size=1, max_size=200).filter(
    str.strip
)


@pytest.mark.parametrize(
    ("template", "as_body"),
    [
        ("/api/conversations/{conversation}/messages/", lambda text: {"content": text}),
        ("/api/completions", lambda text: {"prompt": text}),
        ("/api/chat/completions", lambda text: {"messages": [{"role": "user", "content": text}]}),
    ],
    ids=["messages", "completions", "chat-completions"],
)
@settings(FUZZ, max_examples=10)  # each one is a whole answer from the demo model
@given(text=acceptable)
async def test_any_acceptable_text_is_answered_to_the_end(api, alice, template, as_body, text):
    ids = await sync_to_async(exchange)(alice)
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}

    response, content, refused = await send(
        api, "POST", template.format(**ids), dump(as_body(text)), headers
    )

    assert (response.status, refused) == (200, False), content[:500]
    assert parse_events(content)[0][-1].event == "done"


# A chat id no one has made is no error to resume: nothing runs there (204).
@pytest.mark.parametrize(
    ("method", "template"),
    [e for e in ENDPOINTS if "{" in e[1] and e[1] != "/api/ui/chat/{ui_chat}/stream"],
)
@FUZZ
@given(pk=texts)
async def test_a_malformed_id_in_the_path_is_a_json_404(api, method, template, pk):
    quoted = quote(pk.encode("utf-8", "surrogatepass"), safe="")
    ids = ("conversation", "generation", "key", "ui_chat", "share", "answer", "attachment")
    path = template.format(**dict.fromkeys(ids, quoted))

    response, content, refused = await send(api, method, path, b"{}", {})

    assert (response.status, refused) == (404, True)
    assert json.loads(content)["error"]["code"] == "not_found"


# Django's CSRF check parses a form body before any view runs: handler400 answers.
@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("multipart/form-data", b"--x\r\ngarbage"),  # no boundary
        ("application/x-www-form-urlencoded", b"a=1&" * 2_000),  # too many fields
        ("application/x-www-form-urlencoded", b"a=" + b"x" * 3_000_000),  # too large
    ],
)
async def test_a_form_body_django_cannot_parse_is_a_documented_400(api, content_type, body):
    response, content, _ = await send(
        api, "POST", "/api/conversations/", body, {"Content-Type": content_type}
    )

    assert response.status == 400
    assert_documented(response, content)


# Uploads: any bytes under any name, in a well-formed multipart body or a broken one.
upload_names = st.text(max_size=40) | st.sampled_from(["", "a.png", "../../x.pdf", "<b>.txt"])
upload_bytes = (
    st.binary(max_size=2000)
    | st.sampled_from(
        [
            attachment_files.image(),
            attachment_files.image()[:80],
            attachment_files.pdf("Hello"),
            attachment_files.pdf("Hello")[:200],
            attachment_files.png_bomb(),
            b"%PDF-1.7\n" + b"\x00" * 50,
            b"GIF89a" + b"\xff" * 40,
            b"RIFF\x00\x00\x00\x00WEBPVP8 ",
        ]
    )
    | st.binary(max_size=200).map(lambda tail: attachment_files.image() + tail)
)


@FUZZ
@given(name=upload_names, data=upload_bytes, cut=st.integers(0, 3))
async def test_any_upload_is_stored_whole_or_refused_with_nothing_stored(
    api, alice, name, data, cut
):
    safe_name = name.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    body, content_type = attachment_files.multipart(safe_name, data)
    if cut:  # a body cut short: no closing boundary
        body = body[: -cut * 7]
    headers = {"Content-Type": content_type}

    response, content, refused = await send(api, "POST", "/api/attachments/", body, headers)

    assert_documented(response, content)
    if not refused:
        shown = json.loads(content)
        assert response.status == 201
        assert shown["kind"] in ("image", "text", "pdf")
        await Attachment.objects.filter(pk=shown["id"]).adelete()
