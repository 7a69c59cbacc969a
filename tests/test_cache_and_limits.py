"""The response cache, per-user limits, context trimming and usage records."""

import asyncio

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext

from chat import context, generation, limits, services, tools
from chat.answering import Prepared
from chat.models import Conversation, Usage
from tests.asgi_client import read_events
from tests.conftest import redis_url
from tests.fakeopenai import Reply
from tests.test_stream import ask, stored_answer, stream, text_of

pytestmark = [pytest.mark.anyio, pytest.mark.django_db(transaction=True)]


async def answer_in_new_conversation(api, prompt: str):
    posted = await ask(api, prompt)
    events = await read_events(await stream(api, posted))
    await generation.wait_all()
    return posted, events


async def test_an_identical_question_is_answered_from_the_cache(api, upstream, any_cache):
    upstream.reply_to("Hi", Reply(tokens=["Hel", "lo"], token_delay=0.05))

    _, first = await answer_in_new_conversation(api, "Hi")
    posted, second = await answer_in_new_conversation(api, "Hi")

    assert upstream.completed == 1  # the second asked no model
    assert [(e.id, e.event) for e in second] == [(e.id, e.event) for e in first]
    assert text_of(second) == text_of(first) == (await stored_answer(posted)).content
    assert (first[-1].data["cached"], second[-1].data["cached"]) == (False, True)
    usage = await Usage.objects.aget(generation=posted["generation"]["id"])
    assert usage.cached


async def test_regenerate_bypasses_the_cache(api, upstream):
    conversation = await (await api.post("/api/conversations/", {})).json()
    url = f"/api/conversations/{conversation['id']}/"
    await read_events(
        await stream(api, await (await api.post(url + "messages/", {"content": "Hi"})).json())
    )

    again = await (await api.post(url + "regenerate", {})).json()
    events = await read_events(await stream(api, again))

    assert events[-1].data["cached"] is False
    assert upstream.completed == 2


@pytest.mark.parametrize(
    "reply",
    [
        Reply(tokens=["a ", "b "], drop_after=1),
        Reply(tokens=["a ", "b "], finish_reason="length"),
        Reply(tokens=[], status=500),
    ],
)
async def test_only_complete_answers_are_cached(api, upstream, reply):
    upstream.reply_to("Hi", reply)

    await answer_in_new_conversation(api, "Hi")
    await answer_in_new_conversation(api, "Hi")

    assert len([r for r in upstream.requests if r["body"].get("stream")]) == 2


async def test_a_zero_ttl_turns_the_cache_off(api, upstream, settings):
    settings.CHAT_CACHE_TTL = 0

    await answer_in_new_conversation(api, "Hi")
    await answer_in_new_conversation(api, "Hi")

    assert upstream.completed == 2


async def test_a_corrupt_cache_entry_is_a_miss(api, upstream, any_cache):
    await answer_in_new_conversation(api, "Hi")
    request = {"model": "gpt-test", "messages": [{"role": "user", "content": "Hi"}]}
    key = Prepared.of(request, use_cache=True, tools=tools.offered_to("gpt-test")).cache_key
    await cache.aset(key, {"parts": 7, "finish_reason": None, "usage": "x"})

    _, events = await answer_in_new_conversation(api, "Hi")

    assert events[-1].data["cached"] is False
    assert upstream.completed == 2


async def test_messages_past_the_rate_limit_get_429_with_retry_after(
    api, upstream, settings, any_cache
):
    # An hourly window: a test crossing a minute boundary would see its counter reset.
    settings.CHAT_RATE_LIMITS = {"hour": 2}
    conversation = await (await api.post("/api/conversations/", {})).json()
    url = f"/api/conversations/{conversation['id']}/messages/"
    for prompt in ("one", "two"):
        posted = await (await api.post(url, {"content": prompt})).json()
        await read_events(await stream(api, posted))

    refused = await api.post(url, {"content": "three"})

    assert refused.status == 429
    assert 0 < int(refused.headers["retry-after"]) <= 3600
    assert (await refused.json())["error"]["code"] == "rate_limited"


async def test_concurrent_answers_are_capped_even_when_asked_at_once(
    api, upstream, settings, any_cache
):
    settings.CHAT_MAX_CONCURRENT = 2
    upstream.reply_to("slow", Reply(tokens=["a "] * 20, token_delay=0.05))
    conversations = [
        (await (await api.post("/api/conversations/", {})).json())["id"] for _ in range(5)
    ]

    responses = await asyncio.gather(
        *[api.post(f"/api/conversations/{c}/messages/", {"content": "slow"}) for c in conversations]
    )

    statuses = sorted(r.status for r in responses)
    assert statuses == [202, 202, 429, 429, 429]
    await generation.wait_all()
    later = await api.post(f"/api/conversations/{conversations[0]}/messages/", {"content": "x"})
    assert later.status == 202  # the slots were given back


async def test_staff_are_exempt(api, upstream, settings, alice):
    settings.CHAT_RATE_LIMITS = {"minute": 1}
    alice.is_staff = True
    await alice.asave()

    for prompt in ("one", "two", "three"):
        await answer_in_new_conversation(api, prompt)

    assert upstream.completed == 3


@pytest.mark.parametrize("given", ["by id", "read with its owner"])
def test_a_post_takes_its_owner_as_the_caller_read_it(alice, settings, given):
    conversation = Conversation.objects.create(owner=alice, model=settings.CHAT_MODEL)
    answered = services.Owned(conversation.pk, alice) if given == "by id" else conversation

    with CaptureQueriesContext(connection) as queries:
        question, _ = services._message_post(answered, "Hi", services.Asker.now(None))
    limits.release(alice.pk)

    assert question.content == "Hi"
    assert not [query for query in queries if "auth_user" in query["sql"]]


async def test_a_spent_monthly_budget_refuses_new_answers(api, upstream, settings, alice):
    settings.CHAT_MONTHLY_TOKEN_BUDGET = 10
    await Usage.objects.acreate(user=alice, model="gpt-test", prompt_tokens=6, completion_tokens=5)

    conversation = await (await api.post("/api/conversations/", {})).json()
    refused = await api.post(
        f"/api/conversations/{conversation['id']}/messages/", {"content": "Hi"}
    )

    assert refused.status == 429
    assert (await refused.json())["error"]["code"] == "budget_exhausted"


async def test_usage_is_recorded_from_the_upstream_or_estimated(api, upstream):
    upstream.reply_to("counted", Reply(tokens=["a ", "b "]))
    upstream.reply_to("guessed", Reply(tokens=["a ", "b "], usage=False))

    counted, _ = await answer_in_new_conversation(api, "counted")
    guessed, _ = await answer_in_new_conversation(api, "guessed")

    exact = await Usage.objects.aget(generation=counted["generation"]["id"])
    estimate = await Usage.objects.aget(generation=guessed["generation"]["id"])
    assert (exact.completion_tokens, exact.estimated) == (2, False)
    assert estimate.estimated and estimate.completion_tokens >= 1


def test_trimming_keeps_the_system_prompt_and_the_newest_message():
    messages = [
        {"role": "system", "content": "Be brief."},
        *[{"role": "user", "content": f"message {i} " * 50} for i in range(10)],
        {"role": "user", "content": "the newest " * 500},
    ]

    kept = context.fit(messages, "gpt-4o-mini", budget=400)

    assert kept[0] == messages[0]
    assert kept[-1] == messages[-1]
    assert len(kept) == 2  # the newest alone is over the budget: nothing older fits


def test_trimming_drops_the_oldest_first():
    messages = [{"role": "user", "content": f"m{i} " * 20} for i in range(10)]

    kept = context.fit(messages, "some-local-model", budget=100)

    assert kept == messages[-len(kept) :]
    assert 1 < len(kept) < 10
    assert context.message_tokens(kept, "some-local-model")[0] <= 100


def test_tokens_are_counted_exactly_for_openai_models_and_estimated_otherwise():
    assert context.count_tokens("hello world", "gpt-4o") == (2, False)
    assert context.count_tokens("hello world", "llama3.2") == (3, True)


def test_a_refused_stream_does_not_keep_a_stuck_slot_alive(alice, settings):
    settings.CACHES = {
        "default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": redis_url()}
    }
    settings.CHAT_MAX_CONCURRENT = 1
    cache.clear()
    limits.admit(alice)  # a slot its crashed process will never give back
    cache.touch(limits._slot_key(alice.pk), 30)

    with pytest.raises(limits.LimitExceeded):
        limits.admit(alice)

    assert cache.ttl(limits._slot_key(alice.pk)) <= 30
