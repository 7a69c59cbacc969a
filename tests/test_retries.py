"""Retries: the SDK's, before the answer starts (CHAT_UPSTREAM_MAX_RETRIES); never after a token.

tests/test_stream.py covers each status with retries off; here they are on.
"""

import time

import pytest

from tests.asgi_client import read_events
from tests.fakeopenai import Reply
from tests.test_stream import ask, stored_answer, stream, text_of

pytestmark = [pytest.mark.anyio, pytest.mark.django_db(transaction=True)]

ANSWER = Reply(tokens=["after ", "the ", "wait"])


@pytest.fixture
def retrying(upstream, settings):
    settings.CHAT_UPSTREAM_MAX_RETRIES = 2
    return upstream


def answer_in_turn(upstream, *replies: Reply) -> None:
    """Answer the n-th request with the n-th reply, and every later one with the last."""
    queue = list(replies)
    upstream.default = lambda prompt: queue.pop(0) if len(queue) > 1 else queue[0]


async def answered(api, prompt: str = "Hi"):
    posted = await ask(api, prompt)
    events = await read_events(await stream(api, posted))
    return events, await stored_answer(posted)


def answer_requests(upstream) -> list[dict]:
    """The requests for the answer (streamed), not for the conversation's title after it."""
    return [request for request in upstream.requests if request["body"].get("stream")]


def retry_counts(upstream) -> list[str | None]:
    """The SDK's own count of each request's retries, as it tells the server."""
    return [r["headers"].get("x-stainless-retry-count") for r in answer_requests(upstream)]


async def test_a_429_with_retry_after_is_retried_after_that_wait_and_the_answer_succeeds(
    api, retrying
):
    # 1.2 s: longer than the SDK's own first backoff (0.5 s at most), so the wait proves
    # that Retry-After was followed.
    answer_in_turn(retrying, Reply(tokens=[], status=429, retry_after=1.2), ANSWER)

    started = time.monotonic()
    events, message = await answered(api)

    assert time.monotonic() - started >= 1.2
    assert retry_counts(retrying) == ["0", "1"]
    assert (events[-1].event, events[-1].data["finish_reason"]) == ("done", "stop")
    assert [e.id for e in events] == [1, 2, 3, 4]
    assert (message.status, message.content) == ("complete", "after the wait")


async def test_a_503_is_retried_with_backoff_and_the_answer_succeeds(api, retrying):
    unavailable = Reply(tokens=[], status=503)
    answer_in_turn(retrying, unavailable, unavailable, ANSWER)

    events, message = await answered(api)

    assert retry_counts(retrying) == ["0", "1", "2"]
    assert events[-1].event == "done"
    assert (message.status, message.content) == ("complete", "after the wait")


async def test_past_the_retries_the_answer_ends_with_the_upstreams_error(api, retrying):
    answer_in_turn(retrying, Reply(tokens=[], status=429, retry_after=0.1))

    events, message = await answered(api)

    assert len(answer_requests(retrying)) == 3  # the first and CHAT_UPSTREAM_MAX_RETRIES more
    assert [(e.id, e.event, e.data["code"]) for e in events] == [
        (1, "error", "upstream_rate_limited")
    ]
    assert (message.status, message.error_code, message.content) == (
        "error",
        "upstream_rate_limited",
        "",
    )


@pytest.mark.parametrize(
    "failure",
    [
        Reply(tokens=["shown ", "then ", "lost"], drop_after=2),
        Reply(tokens=["shown ", "then ", "lost"], drop_after=2, mid_frame=True),
        Reply(tokens=["shown ", "then "], in_band_error="The server had an error."),
    ],
    ids=["dropped", "dropped-mid-frame", "in-band-error"],
)
async def test_a_failure_after_the_first_token_is_never_retried(api, retrying, failure):
    answer_in_turn(retrying, failure, ANSWER)

    events, message = await answered(api)

    assert len(answer_requests(retrying)) == 1
    assert events[-1].event == "error"
    assert text_of(events) == message.content == "shown then "
    assert message.status == "error"
