"""Personal API keys: made and revoked by their owner, and Bearer auth on the API."""

import hashlib
import logging
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from chat import api_keys
from chat.models import ApiKey, Conversation, Usage
from tests.asgi_client import AsgiClient, read_events
from tests.test_stream import ask, stream

pytestmark = [pytest.mark.anyio, pytest.mark.django_db(transaction=True)]

HI = [{"role": "user", "content": "Hi"}]


def bearer(secret: str) -> AsgiClient:
    """A client with no cookie and no CSRF token: only the key."""
    return AsgiClient(headers={"Authorization": f"Bearer {secret}"})


async def made(api: AsgiClient, name: str = "laptop") -> dict:
    response = await api.post("/api/keys/", {"name": name})
    assert response.status == 201, await response.body()
    return await response.json()


async def test_a_key_is_shown_once_and_stored_only_as_a_hash(api, alice):
    key = await made(api)

    assert key["key"].startswith("sk-chat-") and len(key["key"]) > 40
    assert key["prefix"] == key["key"][: api_keys.SHOWN_CHARS]
    stored = await ApiKey.objects.aget(pk=key["id"])
    assert stored.key_hash == hashlib.sha256(key["key"].encode()).hexdigest()
    assert key["key"] not in str(await sync_to_async(lambda: list(ApiKey.objects.values()))())
    listed = await (await api.get("/api/keys/")).json()
    assert listed == {
        "keys": [
            {
                "id": key["id"],
                "name": "laptop",
                "prefix": key["prefix"],
                "created_at": stored.created_at.isoformat(),
                "last_used_at": None,
                "expires_at": None,
            }
        ]
    }


async def test_a_key_authenticates_any_api_call_without_cookie_or_csrf(api, alice, upstream):
    key = await made(api)
    client = bearer(key["key"])

    created = await client.post("/api/conversations/", {"title": "From a script"})
    posted = await client.post(
        f"/api/conversations/{(await created.json())['id']}/messages/", {"content": "Hi"}
    )
    events = await read_events(await client.get((await posted.json())["generation"]["stream_url"]))

    assert (created.status, posted.status) == (201, 202)
    assert events[-1].event == "done"
    assert await Conversation.objects.filter(owner=alice, title="From a script").aexists()
    usage = await Usage.objects.select_related("api_key").aget()
    assert usage.api_key is not None and str(usage.api_key.pk) == str(key["id"])
    assert (await ApiKey.objects.aget(pk=key["id"])).last_used_at is not None


@pytest.mark.parametrize(
    "header",
    [
        "Bearer sk-chat-wrong",
        "Bearer ",
        "Bearer not-ours",
        "Basic YWxpY2U6cHc=",
        "Bearer " + "x" * 500,
    ],
)
async def test_a_wrong_key_is_401_even_with_a_session(api, alice, header):
    # The session's cookie and CSRF token are there too: a key, once given, is the only proof.
    response = await api.get("/api/conversations/", headers={"Authorization": header})

    if header.startswith("Basic"):
        assert response.status == 200  # not a Bearer key: the session speaks
        return
    assert response.status == 401
    assert (await response.json())["error"]["code"] == "invalid_api_key"


async def test_a_revoked_key_stops_working_at_once(api, alice):
    key = await made(api)
    client = bearer(key["key"])
    assert (await client.get("/api/conversations/")).status == 200

    assert (await api.delete(f"/api/keys/{key['id']}/")).status == 204

    assert (await client.get("/api/conversations/")).status == 401
    assert (await (await api.get("/api/keys/")).json())["keys"] == []


async def test_an_expired_key_is_refused(api, alice):
    key = await made(api)
    await ApiKey.objects.filter(pk=key["id"]).aupdate(expires_at=timezone.now())

    assert (await bearer(key["key"]).get("/api/conversations/")).status == 401


async def test_a_key_may_be_made_to_expire(api, alice):
    response = await api.post("/api/keys/", {"name": "ci", "expires_in_days": 30})

    expires = (await ApiKey.objects.aget(pk=(await response.json())["id"])).expires_at
    assert expires is not None
    assert timedelta(days=29) < expires - timezone.now() <= timedelta(days=30)


async def test_right_keys_never_count_as_guesses(api, alice, settings):
    settings.CHAT_LOGIN_FAILURES_PER_ADDRESS = 2
    client = bearer((await made(api))["key"])

    statuses = [(await client.get("/api/conversations/")).status for _ in range(5)]

    assert statuses == [200] * 5


async def test_another_users_key_reaches_only_their_own_things(api, bob_api, alice):
    conversation = await (await api.post("/api/conversations/", {})).json()
    bobs = bearer((await made(bob_api))["key"])

    assert (await bobs.get(f"/api/conversations/{conversation['id']}/")).status == 404
    assert (await (await bobs.get("/api/conversations/")).json())["conversations"] == []


async def test_null_parameters_are_left_to_their_defaults_on_v1(api, alice, upstream):
    body = {"model": "gpt-test", "messages": HI, "n": None, "stop": None, "temperature": None}
    body |= {"stream": None, "tools": None, "stream_options": None, "max_tokens": None}

    response = await api.post("/v1/chat/completions", body)

    assert response.status == 200
    assert (await response.json())["choices"][0]["message"]["content"] == "Echo: Hi"


async def test_a_bad_stream_option_is_refused_before_any_limit_is_taken(
    api, alice, upstream, settings
):
    settings.CHAT_MAX_CONCURRENT = 1
    bad = {"model": "gpt-test", "messages": HI, "stream": True}

    for _ in range(3):
        refused = await api.post(
            "/v1/chat/completions", {**bad, "stream_options": {"include_usage": "x"}}
        )
        assert refused.status == 400

    assert (
        await api.post("/v1/chat/completions", {"model": "gpt-test", "messages": HI})
    ).status == 200


async def test_what_shows_a_new_key_is_never_cached(api, alice):
    made_by_api = await api.post("/api/keys/", {"name": "a"})
    made_on_page = await api.post_form("/keys/", {"name": "b"})

    for response in (made_by_api, made_on_page):
        assert "no-store" in response.headers["cache-control"]


async def test_guessing_keys_from_one_address_is_refused_for_a_while(api, alice, settings):
    settings.CHAT_LOGIN_FAILURES_PER_ADDRESS = 3
    key = await made(api)
    for _ in range(3):
        assert (await bearer("sk-chat-guess").get("/api/conversations/")).status == 401

    refused = await bearer(key["key"]).get("/api/conversations/")

    assert refused.status == 429
    assert int(refused.headers["retry-after"]) > 0


async def test_keys_are_made_and_revoked_with_a_session_not_with_a_key(api, alice):
    key = await made(api)
    client = bearer(key["key"])

    assert (await client.post("/api/keys/", {"name": "more"})).status == 403
    assert (await client.delete(f"/api/keys/{key['id']}/")).status == 403
    assert (await client.get("/api/keys/")).status == 200


async def test_a_user_has_at_most_the_configured_number_of_keys(api, alice, settings):
    settings.CHAT_MAX_API_KEYS = 2
    await made(api, "one")
    await made(api, "two")

    refused = await api.post("/api/keys/", {"name": "three"})

    assert refused.status == 400
    assert (await refused.json())["error"]["code"] == "too_many_keys"


@pytest.mark.parametrize(
    "body",
    [{}, {"name": ""}, {"name": 5}, {"name": "x" * 101}, {"name": "a", "expires_in_days": 0}],
)
async def test_a_bad_key_request_is_refused_and_makes_nothing(api, alice, body):
    response = await api.post("/api/keys/", body)

    assert response.status == 400
    assert await ApiKey.objects.acount() == 0


async def test_another_users_key_cannot_be_revoked(api, bob_api, alice):
    key = await made(api)

    assert (await bob_api.delete(f"/api/keys/{key['id']}/")).status == 404
    assert (await bearer(key["key"]).get("/api/conversations/")).status == 200


async def test_no_key_appears_in_the_logs(api, alice, upstream, caplog, settings):
    caplog.set_level(logging.DEBUG)
    settings.CHAT_LOGIN_FAILURES_PER_ADDRESS = 1
    key = await made(api)
    client = bearer(key["key"])
    await read_events(await stream(client, await ask(client, "Hi")))
    await client.post("/v1/chat/completions", {"model": "gpt-test", "messages": HI})
    await bearer(key["key"] + "x").get("/api/conversations/")
    await bearer(key["key"] + "x").get("/v1/models")  # refused: too many wrong keys

    assert key["key"] not in caplog.text
    assert key["key"][api_keys.SHOWN_CHARS :] not in caplog.text


async def test_the_keys_page_makes_shows_once_and_revokes_a_key(api, alice):
    page = await api.post_form("/keys/", {"name": "notebook", "expires": "90"})
    html = (await page.body()).decode()
    key = await ApiKey.objects.aget(user=alice)
    secret = html.split("data-new-key>")[1].split("<")[0]

    assert page.status == 201
    assert (await bearer(secret).get("/api/conversations/")).status == 200
    listing = (await (await api.get("/keys/")).body()).decode()
    assert "notebook" in listing and key.prefix in listing and secret not in listing

    revoked = await api.post_form(f"/keys/{key.pk}/revoke", {})

    assert revoked.status == 302
    assert (await bearer(secret).get("/api/conversations/")).status == 401


async def test_an_unknown_v1_path_is_an_openai_error_object(api, alice):
    response = await api.get("/v1/embeddings")

    assert response.status == 404
    assert set((await response.json())["error"]) == {"message", "type", "param", "code"}
