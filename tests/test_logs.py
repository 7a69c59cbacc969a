"""CHAT_LOG_FORMAT=json: one JSON object per line, with the request id and every extra field."""

import contextlib
import io
import json
import logging
import uuid
from collections.abc import Iterator
from datetime import datetime

import pytest

from chat import generation
from chat.logs import JsonFormatter, RequestIdFilter
from chat.logs import request_id as request_id_var
from tests.asgi_client import read_events
from tests.fakeopenai import Reply


@contextlib.contextmanager
def json_lines_of(name: str) -> Iterator[io.StringIO]:
    """Wire a logger as settings.LOGGING wires the console in json mode; yield its output."""
    output = io.StringIO()
    handler = logging.StreamHandler(output)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield output
    finally:
        logger.setLevel(level)
        logger.removeHandler(handler)


@pytest.fixture
def logged() -> Iterator[io.StringIO]:
    token = request_id_var.set("req-42")
    with json_lines_of("tests.json") as output:
        yield output
    request_id_var.reset(token)


def lines(output: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in output.getvalue().splitlines()]


def test_a_record_with_extra_fields_is_one_json_line_with_them_and_the_request_id(logged):
    logging.getLogger("tests.json").info(
        "generation %s ended",
        "g1",
        extra={"generation": "g1", "user": 7, "model": "gpt-test", "ttft_ms": 12.5, "tokens": 3},
    )

    assert logged.getvalue().count("\n") == 1
    [entry] = lines(logged)
    assert datetime.fromisoformat(entry.pop("time")).utcoffset().total_seconds() == 0
    assert entry == {
        "level": "INFO",
        "logger": "tests.json",
        "message": "generation g1 ended",
        "generation": "g1",
        "user": 7,
        "model": "gpt-test",
        "ttft_ms": 12.5,
        "tokens": 3,
        "request_id": "req-42",
    }


def test_an_exception_is_included_with_its_traceback_on_the_same_line(logged):
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        logging.getLogger("tests.json").exception("it failed")

    [entry] = lines(logged)
    assert entry["message"] == "it failed"
    assert entry["exception"].startswith("Traceback (most recent call last):")
    assert entry["exception"].endswith("ValueError: bad\nvalue")


def test_extras_json_cannot_hold_are_written_as_text(logged):
    generation = uuid.UUID(int=1)

    logging.getLogger("tests.json").warning(
        "odd", extra={"generation": generation, "outcome": {"at": datetime(2026, 1, 2)}}
    )

    [entry] = lines(logged)
    assert entry["generation"] == str(generation)
    assert entry["outcome"] == {"at": "2026-01-02 00:00:00"}


def test_an_extra_cannot_replace_the_level_or_the_message(logged):
    logging.getLogger("tests.json").info("real", extra={"level": "FAKE", "time": "never"})

    [entry] = lines(logged)
    assert (entry["level"], entry["message"]) == ("INFO", "real")
    assert entry["time"] != "never"


@pytest.mark.anyio
@pytest.mark.django_db(transaction=True)
async def test_an_answers_end_is_logged_with_its_figures_and_never_its_text(api, upstream, alice):
    upstream.reply_to("secret question", Reply(tokens=["private ", "answer"]))
    with json_lines_of("chat") as output:
        posted = await api.post("/api/conversations/", {}, headers={"X-Request-ID": "trace-1"})
        conversation = (await posted.json())["id"]
        response = await api.post(
            f"/api/conversations/{conversation}/messages/",
            {"content": "secret question"},
            headers={"X-Request-ID": "trace-1", "Accept": "text/event-stream"},
        )
        await read_events(response)
        await generation.wait_all()

    [ended] = [line for line in lines(output) if "generation" in line]
    assert ended["request_id"] == "trace-1"
    assert (ended["user"], ended["model"], ended["outcome"]) == (alice.pk, "gpt-test", "stop")
    assert (ended["deltas"], ended["completion_tokens"], ended["cached"]) == (2, 2, False)
    assert 0 <= ended["ttft_ms"] <= ended["duration_ms"]
    assert "secret" not in output.getvalue() and "private" not in output.getvalue()
