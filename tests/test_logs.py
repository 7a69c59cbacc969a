"""CHAT_LOG_FORMAT=json: one JSON object per line, with the request id and every extra field."""

import io
import json
import logging
import uuid
from collections.abc import Iterator
from datetime import datetime

import pytest

from chat.logs import JsonFormatter
from chat.middleware import RequestIdFilter, request_id_var


@pytest.fixture
def logged() -> Iterator[io.StringIO]:
    """A logger wired as settings.LOGGING wires the console in json mode; yields its output."""
    output = io.StringIO()
    handler = logging.StreamHandler(output)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("tests.json")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    token = request_id_var.set("req-42")
    yield output
    request_id_var.reset(token)
    logger.removeHandler(handler)


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
