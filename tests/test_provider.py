"""The provider's own reading of the upstream stream, driven by the real SDK over real HTTP."""

import asyncio
import itertools

import pytest

from chat import provider
from chat.events import DELTA, Part
from chat.provider import Finish, ProviderError, SSEDecoder
from tests.fakeopenai import Reply

pytestmark = pytest.mark.anyio

UNICODE = ["héllo ", "wörld ", "日本語", "🎉🚀", " Ünïcödé", "👩‍👩‍👧"]


def model_at(settings, base_url: str) -> None:
    """Point the provider at the model served at `base_url`, with no retries."""
    settings.OPENAI_BASE_URL = base_url
    settings.OPENAI_API_KEY = "sk-test-key"
    settings.CHAT_UPSTREAM_MAX_RETRIES = 0
    settings.CHAT_UPSTREAM_READ_TIMEOUT = 5.0


@pytest.fixture
def fake(fake_openai, settings):
    fake_openai.reset()
    model_at(settings, fake_openai.base_url)
    return fake_openai


def request(prompt: str = "Hi") -> dict:
    return {"model": "gpt-test", "messages": [{"role": "user", "content": prompt}]}


async def answer(prompt: str = "Hi") -> tuple[list[str], Finish]:
    """Run stream_chat to its end: the text deltas, and the Finish that must come last."""
    items = [item async for item in provider.stream_chat(request(prompt))]
    *parts, finish = items
    assert isinstance(finish, Finish)
    return [text_of(part) for part in parts], finish


def text_of(part: object) -> str:
    assert isinstance(part, Part) and part.kind == DELTA
    return part.data["content"]


async def failure(prompt: str = "Hi") -> tuple[list[str], ProviderError]:
    """Run stream_chat until it fails: the text deltas before, and the error."""
    deltas = []
    with pytest.raises(ProviderError) as raised:
        async for item in provider.stream_chat(request(prompt)):
            deltas.append(text_of(item))
    return deltas, raised.value


async def test_it_yields_the_deltas_then_the_finish_reason_and_usage(fake):
    fake.reply_to("Hi", Reply(tokens=["Hel", "lo", "", " world"], finish_reason="length"))

    deltas, finish = await answer()

    assert "".join(deltas) == "Hello world"
    assert finish == Finish(
        "length", {"prompt_tokens": 1, "completion_tokens": 4, "total_tokens": 5}
    )


async def test_deltas_read_together_are_relayed_as_one_and_a_lone_one_at_once(fake):
    fake.reply_to("Burst", Reply(tokens=["a ", "b ", "c "], burst=True))
    fake.reply_to("Paced", Reply(tokens=["a ", "b ", "c "], token_delay=0.05))

    burst, _ = await answer("Burst")
    paced, _ = await answer("Paced")

    assert (burst, paced) == (["a b c "], ["a ", "b ", "c "])


async def test_utf8_cut_inside_characters_between_reads_arrives_whole(fake):
    fake.reply_to("Hi", Reply(tokens=UNICODE, split_writes=True))

    deltas, finish = await answer()

    assert "".join(deltas) == "".join(UNICODE)
    assert finish.reason == "stop"


@pytest.mark.parametrize("split_writes", [False, True])
async def test_crlf_line_endings_and_keep_alive_comments_are_understood(fake, split_writes):
    # Split writes also cut every frame between the CR and the LF of its last line end.
    reply = Reply(tokens=UNICODE, crlf=True, keep_alive=True, split_writes=split_writes)
    fake.reply_to("Hi", reply)

    deltas, finish = await answer()

    assert "".join(deltas) == "".join(UNICODE)
    assert finish.reason == "stop"
    assert finish.usage is not None


async def test_an_error_sent_inside_the_stream_ends_it_after_the_deltas(fake):
    fake.reply_to("Hi", Reply(tokens=["a ", "b "], in_band_error="The model is overloaded."))

    deltas, error = await failure()

    assert "".join(deltas) == "a b "
    assert error.code == "upstream_error"


async def test_a_frame_that_is_not_json_is_a_malformed_reply(fake):
    fake.reply_to("Hi", Reply(tokens=["a ", "b "], malformed=True))

    deltas, error = await failure()

    assert "".join(deltas) == "a b "
    assert error.code == "upstream_malformed"


async def test_a_stream_that_ends_without_done_still_finishes(fake):
    fake.reply_to("Hi", Reply(tokens=["a ", "b "], done=False))

    deltas, finish = await answer()

    assert "".join(deltas) == "a b "
    assert finish.reason == "stop"
    assert finish.usage is not None


async def test_a_stream_without_a_finish_reason_is_incomplete(fake):
    fake.reply_to("Hi", Reply(tokens=["a ", "b "], finish_reason=None))

    deltas, error = await failure()

    assert "".join(deltas) == "a b "
    assert error.code == "upstream_incomplete"


@pytest.mark.parametrize("mid_frame", [False, True])
async def test_a_connection_cut_mid_stream_is_unreachable(fake, mid_frame):
    fake.reply_to("Hi", Reply(tokens=["a ", "b ", "c "], drop_after=2, mid_frame=mid_frame))

    deltas, error = await failure()

    assert "".join(deltas) == "a b "
    assert error.code == "upstream_unreachable"


async def test_a_stalled_stream_times_out(fake, settings):
    settings.CHAT_UPSTREAM_READ_TIMEOUT = 0.2
    fake.reply_to("Hi", Reply(tokens=["a "], hang=True))

    deltas, error = await failure()

    assert deltas == ["a "]
    assert error.code == "upstream_timeout"
    await asyncio.to_thread(fake.wait_until, lambda: fake.aborted == 1)


@pytest.mark.parametrize(
    ("status", "code"), [(401, "upstream_auth"), (500, "upstream_unavailable")]
)
async def test_an_error_status_raises_before_any_delta(fake, status, code):
    fake.reply_to("Hi", Reply(tokens=["never"], status=status))

    deltas, error = await failure()

    assert (deltas, error.code) == ([], code)


async def test_a_reader_that_stops_early_closes_the_upstream_request(fake):
    fake.reply_to("Hi", Reply(tokens=["a ", "b "], hang=True))
    stream = provider.stream_chat(request())

    assert text_of(await anext(stream)) == "a "
    await stream.aclose()

    await asyncio.to_thread(fake.wait_until, lambda: fake.aborted == 1)


async def test_cancelling_the_reader_closes_the_upstream_request(fake):
    fake.reply_to("Hi", Reply(tokens=["a "], hang=True))
    first = asyncio.Event()

    async def read() -> None:
        async for _ in provider.stream_chat(request()):
            first.set()

    task = asyncio.create_task(read())
    await asyncio.wait_for(first.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    await asyncio.to_thread(fake.wait_until, lambda: fake.aborted == 1)


async def test_a_finished_stream_gives_its_connection_back_for_the_next(fake):
    for _ in range(3):
        await answer()

    # The fake counts a stream once it has written its end, which the client may read first.
    await asyncio.to_thread(fake.wait_until, lambda: fake.completed == 3)
    assert fake.connections == 1


# -- the SSE decoder alone ---------------------------------------------------------------

STREAM = (
    b": keep-alive\r\n\r\n"
    b'event: message\nid: 7\nretry: 100\ndata: {"a":\r\ndata:"\xc3\xa9\xf0\x9f\x8c\x8a"}\n\n'
    b"data: [DONE]\r\r"
)
EVENTS = [b'{"a":\n"\xc3\xa9\xf0\x9f\x8c\x8a"}', b"[DONE]"]


def decode(*reads: bytes) -> list[bytes]:
    decoder = SSEDecoder()
    return [event for data in reads for event in decoder.feed(data)]


def test_the_decoder_joins_data_lines_and_skips_comments_and_other_fields():
    assert decode(STREAM) == EVENTS


@pytest.mark.parametrize("cut", range(1, len(STREAM)))
def test_the_decoder_reads_the_same_events_wherever_a_read_ends(cut):
    assert decode(STREAM[:cut], STREAM[cut:]) == EVENTS


def test_the_decoder_reads_the_same_events_one_byte_at_a_time():
    assert decode(*(bytes([byte]) for byte in STREAM)) == EVENTS


def test_the_decoder_keeps_an_event_without_its_blank_line_pending():
    assert decode(b"data: 1\n\ndata: 2\n") == [b"1"]


def test_the_decoder_treats_a_crlf_cut_in_two_as_one_line_end():
    reads = [b"data: 1\r", b"\ndata: 2\r", b"\n\r", b"\n"]
    assert decode(*reads) == [b"1\n2"]


def test_the_decoder_ends_lines_on_a_lone_cr():
    assert decode(b"data: 1\r\rdata: 2\r", b"\r") == [b"1", b"2"]


async def test_a_model_faster_than_the_relay_leaves_the_loop_a_turn_at_every_read(fake):
    fake.reply_to("Hi", Reply(tokens=[f"w{i} " for i in range(3000)]))
    turns = 0

    async def other_work() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    ticker = asyncio.create_task(other_work())
    seen = []
    try:
        async for _ in provider.stream_chat(request()):
            seen.append(turns)
    finally:
        ticker.cancel()

    # Every read's part found the other task run since the one before: none waited for
    # the whole answer.
    assert len(seen) > 2
    assert all(later > earlier for earlier, later in itertools.pairwise(seen))
