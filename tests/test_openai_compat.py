"""
The OpenAI-compatible endpoint, driven by the official SDKs: `openai` for Python (sync and
async) and the `openai` npm package under Node, against the site under daphne, with a
personal API key and the fake OpenAI server as the model.
"""

import openai
import pytest

from chat import api_keys
from chat.models import ApiKey, Usage
from tests import live
from tests.fakeopenai import Reply

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# Each test has a new user: four messages an hour is room for every test but the one
# that runs into the limit.
RATE_LIMIT = 4


@pytest.fixture(scope="module")
def site(django_db_setup, django_db_blocker, fake_openai):
    with (
        django_db_blocker.unblock(),
        live.site(fake_openai, CHAT_RATE_LIMITS=f"{RATE_LIMIT}/hour") as url,
    ):
        yield f"{url}/v1"


@pytest.fixture
def upstream(fake_openai):
    fake_openai.reset()
    return fake_openai


@pytest.fixture
def key(alice) -> str:
    return api_keys.create(alice, "tests")[1]


@pytest.fixture
def client(site, key) -> openai.OpenAI:
    return openai.OpenAI(base_url=site, api_key=key, max_retries=0)


HI = [{"role": "user", "content": "Hi"}]
CALCULATOR = {
    "type": "function",
    "function": {
        "name": "calculator",
        "description": "Arithmetic.",
        "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}},
    },
}


def test_a_completion_not_streamed_is_one_chat_completion(client, upstream):
    upstream.reply_to("Hi", Reply(tokens=["Hel", "lo ", "wörld 🌍"]))

    completion = client.chat.completions.create(model="gpt-test", messages=HI)

    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == "Hello wörld 🌍"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.completion_tokens == 3
    assert completion.model == "gpt-test"


def test_a_streamed_completion_is_chunks_then_usage_then_done(client, upstream, alice):
    upstream.reply_to("Hi", Reply(tokens=["Hel", "lo ", "wörld 🌍"], token_delay=0.01))

    chunks = list(
        client.chat.completions.create(
            model="gpt-test", messages=HI, stream=True, stream_options={"include_usage": True}
        )
    )

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello wörld 🌍"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 3
    assert Usage.objects.get(user=alice).api_key == ApiKey.objects.get(user=alice)


@pytest.mark.anyio
async def test_the_async_client_streams_too(site, key, upstream):
    upstream.reply_to("Hi", Reply(tokens=["a", "b", "c"]))
    client = openai.AsyncOpenAI(base_url=site, api_key=key, max_retries=0)

    stream = await client.chat.completions.create(model="gpt-test", messages=HI, stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    assert text == "abc"
    await client.close()


@pytest.mark.parametrize("streamed", [False, True])
def test_a_clients_tools_go_upstream_and_its_tool_calls_come_back_unchanged(
    client, upstream, streamed
):
    function = {"name": "calculator", "arguments": '{"expression": "6*7"}'}
    upstream.reply_to(
        "Hi",
        Reply(
            tokens=[
                {
                    "tool_calls": [
                        {"index": 0, "id": "call_x", "type": "function", "function": function}
                    ]
                }
            ],
            finish_reason="tool_calls",
        ),
    )

    response = client.chat.completions.create(
        model="gpt-test", messages=HI, tools=[CALCULATOR], stream=streamed
    )

    if streamed:
        chunks = list(response)
        calls = [call for c in chunks if c.choices for call in c.choices[0].delta.tool_calls or []]
        finish = [c.choices[0].finish_reason for c in chunks if c.choices][-1]
    else:
        calls = response.choices[0].message.tool_calls
        finish = response.choices[0].finish_reason
    assert [(c.id, c.function.name, c.function.arguments) for c in calls] == [
        ("call_x", "calculator", '{"expression": "6*7"}')
    ]
    assert finish == "tool_calls"
    sent = upstream.requests[-1]["body"]
    assert sent["tools"] == [CALCULATOR]  # the client's, not the site's own


def test_a_tool_result_from_the_client_goes_upstream(client, upstream):
    history = [
        *HI,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_x",
                    "type": "function",
                    "function": {"name": "calculator", "arguments": '{"expression": "6*7"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_x", "content": '{"value": 42}'},
    ]

    client.chat.completions.create(model="gpt-test", messages=history, tools=[CALCULATOR])

    assert upstream.requests[-1]["body"]["messages"] == history


def test_the_sdks_raise_their_own_errors_for_our_401_404_and_400(site, client, upstream):
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=site, api_key="sk-chat-wrong", max_retries=0).models.list()
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="gpt-9", messages=HI)
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="gpt-test", messages=HI, n=2)

    assert missing.value.code == "model_not_found"
    assert "n=1" in bad.value.message
    assert upstream.requests == []


def test_past_the_users_rate_limit_the_sdk_raises_rate_limit_error(client, upstream):
    for _ in range(RATE_LIMIT):
        client.chat.completions.create(model="gpt-test", messages=HI)

    with pytest.raises(openai.RateLimitError) as limited:
        client.chat.completions.create(model="gpt-test", messages=HI)

    assert int(limited.value.response.headers["retry-after"]) > 0


def test_models_lists_chat_models(client):
    assert [model.id for model in client.models.list()] == ["gpt-test", "gpt-other"]


def test_a_client_that_leaves_closes_the_upstream_request(client, upstream):
    upstream.reply_to("Hi", Reply(tokens=[f"w{i} " for i in range(200)], token_delay=0.02))

    stream = client.chat.completions.create(model="gpt-test", messages=HI, stream=True)
    for count, _ in enumerate(stream):
        if count == 3:
            break
    stream.close()

    upstream.wait_until(lambda: upstream.aborted == 1)
    # What was sent is billed: the test's end (a flush of the database) waits for that write.
    upstream.wait_until(Usage.objects.exists)


def test_a_failure_upstream_is_an_error_the_sdk_raises_mid_stream(client, upstream):
    upstream.reply_to("Hi", Reply(tokens=["a "], in_band_error="boom"))

    with pytest.raises(openai.APIError):
        list(client.chat.completions.create(model="gpt-test", messages=HI, stream=True))


def node(scenario: str, site: str, key: str, request: dict | None = None) -> dict:
    return live.node("openai_client.mjs", scenario, {"BASE_URL": site, "API_KEY": key}, request)


def test_the_node_sdk_streams_and_completes_with_usage(site, key, upstream):
    upstream.reply_to("Hi", Reply(tokens=["Hel", "lo ", "wörld 🌍"]))
    request = {"model": "gpt-test", "messages": HI}

    streamed = node("stream", site, key, request)
    whole = node("complete", site, key, request)

    assert streamed["text"] == whole["text"] == "Hello wörld 🌍"
    assert streamed["usage"]["completion_tokens"] == whole["usage"]["completion_tokens"] == 3
    assert (streamed["finishReason"], whole["object"]) == ("stop", "chat.completion")
    assert node("models", site, key)["ids"] == ["gpt-test", "gpt-other"]


def test_the_node_sdk_raises_its_own_error_classes(site, key, upstream):
    assert node("models", site, "sk-chat-wrong")["error"] == "AuthenticationError"
    missing = node("complete", site, key, {"model": "gpt-9", "messages": HI})
    assert (missing["error"], missing["code"]) == ("NotFoundError", "model_not_found")
    for _ in range(RATE_LIMIT):
        node("complete", site, key, {"model": "gpt-test", "messages": HI})
    assert node("complete", site, key, {"model": "gpt-test", "messages": HI})["error"] == (
        "RateLimitError"
    )


def test_the_node_sdk_gets_tool_calls_back(site, key, upstream):
    function = {"name": "calculator", "arguments": '{"expression": "1+1"}'}
    call = {"index": 0, "id": "call_n", "type": "function", "function": function}
    upstream.reply_to("Hi", Reply(tokens=[{"tool_calls": [call]}], finish_reason="tool_calls"))

    streamed = node(
        "stream", site, key, {"model": "gpt-test", "messages": HI, "tools": [CALCULATOR]}
    )

    assert streamed["finishReason"] == "tool_calls"
    assert streamed["toolCalls"][0]["function"] == function
