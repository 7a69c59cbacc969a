"""The fake OpenAI server, checked through the real OpenAI SDK over real HTTP."""

import json
import time
from collections.abc import AsyncIterator, Iterator

import anyio
import httpx2
import openai
import pytest
from openai.types.chat import ChatCompletionChunk

from tests.fakeopenai import FakeOpenAI, Reply

pytestmark = pytest.mark.anyio

MESSAGES = [{"role": "user", "content": "Say hi"}]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def fake(server: FakeOpenAI) -> FakeOpenAI:
    server.reset()
    return server


@pytest.fixture
async def client(fake: FakeOpenAI, anyio_backend: str) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=fake.base_url, api_key="test-key", max_retries=0) as sdk:
        yield sdk


async def stream_chunks(
    client: openai.AsyncOpenAI, prompt: str = "Say hi"
) -> list[ChatCompletionChunk]:
    """Stream a completion for prompt and return every chunk."""
    stream = await client.chat.completions.create(
        model="gpt-test",
        messages=[{"role": "user", "content": prompt}],
        stream=True,
        stream_options={"include_usage": True},
    )
    async with stream:
        return [chunk async for chunk in stream]


def text_of(chunks: list[ChatCompletionChunk]) -> str:
    """The content deltas of chunks, joined."""
    return "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)


async def test_it_streams_the_tokens_then_finish_reason_and_usage(
    fake: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    fake.reply_to("Say hi", Reply(tokens=["Hel", "lo", ", world"]))

    chunks = await stream_chunks(client)

    assert text_of(chunks) == "Hello, world"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [chunk.choices[0].delta.content for chunk in chunks[1:4]] == ["Hel", "lo", ", world"]
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 3
    assert chunks[-1].usage.total_tokens == chunks[-1].usage.prompt_tokens + 3
    assert {chunk.id for chunk in chunks} == {chunks[0].id}
    assert {chunk.model for chunk in chunks} == {"gpt-test"}
    fake.wait_until(lambda: fake.completed == 1)
    assert fake.aborted == 0


async def test_it_echoes_the_last_user_message_by_default(
    fake: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    stream = await client.chat.completions.create(
        model="gpt-test",
        messages=[
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "an answer"},
            {"role": "user", "content": [{"type": "text", "text": "second question"}]},
        ],
        stream=True,
    )
    async with stream:
        chunks = [chunk async for chunk in stream]

    assert text_of(chunks) == "Echo: second question"
    assert len([chunk for chunk in chunks if chunk.choices[0].delta.content]) == 3


async def test_it_sends_finish_reason_length_and_can_leave_out_usage(
    fake: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    fake.reply_to("Say hi", Reply(tokens=["cut"], finish_reason="length", usage=False))

    chunks = await stream_chunks(client)

    assert chunks[-1].choices[0].finish_reason == "length"
    assert all(chunk.usage is None for chunk in chunks)


async def test_it_reassembles_multibyte_text_written_in_pieces_split_inside_characters(
    fake: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    text = "héllo wörld 日本語 🎉🚀 Ünïcödé"
    tokens = ["hé", "llo w", "örld ", "日本", "語 🎉", "🚀", " Ünïcödé"]
    fake.reply_to("Say hi", Reply(tokens=tokens, split_writes=True))

    assert text_of(await stream_chunks(client)) == text


async def test_it_really_cuts_split_writes_inside_characters(fake: FakeOpenAI) -> None:
    fake.reply_to("Say hi", Reply(tokens=["日本語 🎉"], split_writes=True))
    body = {"model": "gpt-test", "messages": MESSAGES, "stream": True}

    async with httpx2.AsyncClient() as http:
        url = f"{fake.base_url}/chat/completions"
        async with http.stream("POST", url, json=body) as response:
            pieces = [piece async for piece in response.aiter_raw()]

    assert "日本語 🎉" in b"".join(pieces).decode()
    assert all(len(piece) <= 16 for piece in pieces)
    undecodable = []
    for piece in pieces:
        try:
            piece.decode()
        except UnicodeDecodeError:
            undecodable.append(piece)
    assert len(undecodable) >= 4  # one piece per character cut, at least


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (401, openai.AuthenticationError),
        (429, openai.RateLimitError),
        (500, openai.InternalServerError),
    ],
)
async def test_it_answers_an_error_status_with_openai_error_json(
    fake: FakeOpenAI, client: openai.AsyncOpenAI, status: int, error: type[openai.APIStatusError]
) -> None:
    fake.reply_to("Say hi", Reply(tokens=["never sent"], status=status, retry_after=7))

    with pytest.raises(error) as raised:
        await stream_chunks(client)

    assert raised.value.status_code == status
    assert raised.value.response.headers["retry-after"] == "7"
    assert isinstance(raised.value.body, dict)
    assert set(raised.value.body) >= {"message", "type", "code"}


@pytest.mark.parametrize("mid_frame", [False, True])
async def test_it_drops_the_connection_mid_stream(
    fake: FakeOpenAI, client: openai.AsyncOpenAI, mid_frame: bool
) -> None:
    fake.reply_to(
        "Say hi", Reply(tokens=["one ", "two ", "three"], drop_after=2, mid_frame=mid_frame)
    )
    received: list[str] = []

    stream = await client.chat.completions.create(model="gpt-test", messages=MESSAGES, stream=True)
    with pytest.raises(openai.APIConnectionError):
        async with stream:
            async for chunk in stream:
                received.append(chunk.choices[0].delta.content or "")

    assert "".join(received) == "one two "
    assert (fake.completed, fake.aborted) == (0, 0)


async def test_it_sends_an_in_band_error_after_the_tokens(
    fake: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    fake.reply_to("Say hi", Reply(tokens=["partial"], in_band_error="The model overloaded."))
    received: list[str] = []

    stream = await client.chat.completions.create(model="gpt-test", messages=MESSAGES, stream=True)
    with pytest.raises(openai.APIError, match="The model overloaded"):
        async with stream:
            async for chunk in stream:
                received.append(chunk.choices[0].delta.content or "")

    assert "".join(received) == "partial"


async def test_it_sends_malformed_json_which_the_sdk_does_not_wrap_in_an_api_error(
    fake: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    fake.reply_to("Say hi", Reply(tokens=["partial"], malformed=True))

    with pytest.raises(json.JSONDecodeError):
        await stream_chunks(client)


async def test_it_counts_a_stream_the_client_closes_early_as_aborted(
    fake: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    fake.reply_to("Say hi", Reply(tokens=["a", "b", "c"], hang=True))

    stream = await client.chat.completions.create(model="gpt-test", messages=MESSAGES, stream=True)
    async with stream:
        async for _chunk in stream:
            break

    fake.wait_until(lambda: fake.aborted == 1)
    assert fake.completed == 0


async def test_it_sends_headers_at_once_and_notices_a_client_leaving_during_the_delay(
    fake: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    fake.reply_to("Say hi", Reply(tokens=["late"], first_token_delay=60))

    with anyio.fail_after(2):
        stream = await client.chat.completions.create(
            model="gpt-test", messages=MESSAGES, stream=True
        )
    await stream.close()

    fake.wait_until(lambda: fake.aborted == 1)


async def test_it_hangs_after_the_tokens_until_the_client_times_out(
    fake: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    fake.reply_to("Say hi", Reply(tokens=["stuck"], hang=True))
    received: list[str] = []

    stream = await client.chat.completions.create(
        model="gpt-test", messages=MESSAGES, stream=True, timeout=0.2
    )
    with pytest.raises(openai.APITimeoutError):
        async with stream:
            async for chunk in stream:
                received.append(chunk.choices[0].delta.content or "")

    assert "".join(received) == "stuck"
    fake.wait_until(lambda: fake.aborted == 1)


async def test_it_paces_the_tokens_with_token_delay(
    fake: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    fake.reply_to("Say hi", Reply(tokens=["a", "b", "c", "d"], token_delay=0.05))
    arrivals: list[float] = []

    stream = await client.chat.completions.create(model="gpt-test", messages=MESSAGES, stream=True)
    async with stream:
        async for chunk in stream:
            if chunk.choices[0].delta.content:
                arrivals.append(time.monotonic())

    assert len(arrivals) == 4
    # Three delays of 0.05 s; the slack allows for timer rounding and client-side latency.
    assert arrivals[-1] - arrivals[0] >= 0.1


async def test_it_answers_a_non_streaming_request_with_the_whole_text(
    fake: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    fake.reply_to("Title please", Reply(tokens=["A ", "short ", "title"]))

    completion = await client.chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "Title please"}]
    )

    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == "A short title"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 3
    assert fake.completed == 0  # only streams are counted


async def test_it_records_every_request_with_its_headers_and_body(
    fake: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    await stream_chunks(client, "first")
    await client.chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "second"}]
    )

    first, second = fake.requests
    assert first["path"] == second["path"] == "/v1/chat/completions"
    assert first["headers"]["authorization"] == "Bearer test-key"
    assert first["body"]["model"] == "gpt-test"
    assert first["body"]["messages"] == [{"role": "user", "content": "first"}]
    assert first["body"]["stream_options"] == {"include_usage": True}
    assert second["body"]["messages"][-1]["content"] == "second"
    assert not second["body"].get("stream")


async def test_it_keeps_connections_alive_for_the_sdk_pool(
    fake: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    await stream_chunks(client, "one")
    await client.chat.completions.create(model="gpt-test", messages=MESSAGES)
    await stream_chunks(client, "two")

    assert len(fake.requests) == 3
    assert fake.connections == 1


async def test_it_answers_unknown_paths_with_404_and_bad_json_with_400(
    fake: FakeOpenAI,
) -> None:
    async with httpx2.AsyncClient() as http:
        missing = await http.post(f"{fake.base_url}/embeddings", json={})
        garbled = await http.post(f"{fake.base_url}/chat/completions", content=b"{not json")

    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "invalid_request_error"
    assert garbled.status_code == 400
    assert garbled.json()["error"]["message"]
    assert [request["body"] for request in fake.requests] == [{}, None]


async def test_it_forgets_scripts_and_counters_on_reset(
    fake: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    fake.reply_to("Say hi", Reply(tokens=["scripted"]))
    await stream_chunks(client)
    fake.wait_until(lambda: fake.completed == 1)

    fake.reset()

    assert (fake.completed, fake.aborted, fake.requests) == (0, 0, [])
    assert text_of(await stream_chunks(client)) == "Echo: Say hi"


async def test_it_explains_what_it_waited_for_on_timeout(fake: FakeOpenAI) -> None:
    with pytest.raises(AssertionError, match=r"(?s)fake\.aborted == 99.*completed=0"):
        fake.wait_until(lambda: fake.aborted == 99, timeout=0.05)


async def test_it_stops_cleanly_with_a_stream_still_open() -> None:
    fake = FakeOpenAI()
    fake.start()
    fake.reply_to("Say hi", Reply(tokens=["stuck"], hang=True))
    async with openai.AsyncOpenAI(base_url=fake.base_url, api_key="k", max_retries=0) as sdk:
        stream = await sdk.chat.completions.create(model="gpt-test", messages=MESSAGES, stream=True)
        async with stream:
            first = await anext(stream)
            fake.stop()
            with pytest.raises(openai.APIConnectionError):
                async for _chunk in stream:
                    pass

    assert first.choices[0].delta.role == "assistant"
