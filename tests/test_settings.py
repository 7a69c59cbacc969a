"""Start-up reads the settings from the environment and refuses nonsense, naming the variable."""

import os
import runpy
import subprocess
import sys
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from tests.servers import ROOT

# Prefixes of every variable chatsite/settings.py reads that would change these tests.
READ_BY_SETTINGS = ("CHAT_", "OPENAI_", "DJANGO_DEBUG", "REDIS_URL", "LOG_LEVEL", "SECRET_KEY")


def startup_environment(env: dict[str, str]) -> dict[str, str]:
    """The test run's environment minus the variables the settings read, with DEBUG and env."""
    kept = {k: v for k, v in os.environ.items() if not k.startswith(READ_BY_SETTINGS)}
    return {**kept, "DJANGO_DEBUG": "1", **env}


def load_settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> dict[str, Any]:
    """Run chatsite/settings.py afresh, as start-up does, in startup_environment(env)."""
    environment = startup_environment(env)
    for name in os.environ.keys() - environment.keys():
        monkeypatch.delenv(name)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(ROOT / "chatsite" / "settings.py"))


WHOLE = "a whole number of at least"
RATES = "limits like 20/minute,100/hour,500/day"
BOOLEAN = "a boolean: 1, true, yes or on; 0, false, no or off"

# (variable, nonsense value, what the message must say is allowed)
NONSENSE = [
    ("DJANGO_DEBUG", "maybe", BOOLEAN),
    ("CHAT_SIGNUP_OPEN", "perhaps", BOOLEAN),
    ("CHAT_STAFF_EXEMPT", "2", BOOLEAN),
    ("CHAT_RATE_LIMITS", "abc", RATES),
    ("CHAT_RATE_LIMITS", "-1/minute", RATES),
    ("CHAT_RATE_LIMITS", "0/day", RATES),
    ("CHAT_RATE_LIMITS", "5/fortnight", RATES),
    ("CHAT_RATE_LIMITS", "1.5/minute", RATES),
    ("CHAT_RATE_LIMITS", "/minute", RATES),
    ("CHAT_RATE_LIMITS", "20/", RATES),
    ("CHAT_RATE_LIMITS", "minute=5", RATES),
    ("CHAT_RATE_LIMITS", "²/minute", RATES),
    ("CHAT_RATE_LIMITS", "20/minute,30/minute", "each period at most once"),
    ("CHAT_MAX_CONCURRENT", "0", f"{WHOLE} 1"),
    ("CHAT_MAX_CONCURRENT", "-1", f"{WHOLE} 1"),
    ("CHAT_MAX_CONCURRENT", "two", f"{WHOLE} 1"),
    ("CHAT_MAX_CONCURRENT", "1.5", f"{WHOLE} 1"),
    ("CHAT_MONTHLY_TOKEN_BUDGET", "-5", f"{WHOLE} 0"),
    ("CHAT_CACHE_TTL", "-1", f"{WHOLE} 0"),
    ("CHAT_CACHE_MODE", "bogus", "all or deterministic"),
    ("CHAT_CONTEXT_TOKENS", "0", f"{WHOLE} 100"),
    ("CHAT_MAX_MESSAGE_CHARS", "0", f"{WHOLE} 1"),
    ("CHAT_UPSTREAM_CONNECT_TIMEOUT", "-1", "a number of at least 0.1"),
    ("CHAT_UPSTREAM_READ_TIMEOUT", "0", "a number of at least 0.1"),
    ("CHAT_UPSTREAM_MAX_RETRIES", "-1", f"{WHOLE} 0"),
    ("CHAT_GENERATION_TIMEOUT", "nan", "a number of at least 1.0"),
    ("CHAT_GENERATION_TIMEOUT", "10m", "a number of at least 1.0"),
    ("CHAT_SSE_HEARTBEAT", "-1", "a number of at least 0.01"),
    ("CHAT_SSE_HEARTBEAT", "inf", "a number of at least 0.01"),
    ("CHAT_SSE_RETRY_MS", "1s", f"{WHOLE} 0"),
    ("CHAT_CHECKPOINT_INTERVAL", "-2", "a number of at least 0.0"),
    ("CHAT_EVENT_LOG", "disk", "memory or redis"),
    ("CHAT_EVENT_LOG_RETAIN", "0", f"{WHOLE} 1"),
    ("CHAT_EVENT_LOG_MAXLEN", "10", f"{WHOLE} 100"),
    ("CHAT_REDIS_MAX_CONNECTIONS", "1", f"{WHOLE} 10"),
    ("CHAT_LIVENESS_INTERVAL", "0", "a number of at least 0.05"),
    ("CHAT_CANCEL_POLL_INTERVAL", "0", "a number of at least 0.01"),
    ("CHAT_SWEEP_INTERVAL", "-60", "a number of at least 0.0"),
    ("CHAT_ABANDON_AFTER", "never", "a number of at least 0.0"),
    ("CHAT_DEMO_TOKEN_DELAY", "-0.03", "a number of at least 0.0"),
    ("LOG_LEVEL", "LOUD", "DEBUG, INFO, WARNING, ERROR or CRITICAL"),
    ("CHAT_MODELS", '[{"name": "a"', "comma-separated names or a JSON list"),
    ("CHAT_MODELS", '[{"label": "A"}]', "each entry needs a name"),
    ("CHAT_MODELS", '[{"name": "a", "colour": "red"}]', "unknown keys ['colour']"),
    ("CHAT_MODELS", '[{"name": "a", "base_url": 5}]', "must be non-empty strings"),
    ("CHAT_MODELS", '[""]', "must be non-empty strings"),
    ("CHAT_MODELS", '[{"name": "a", "api_key_env": "CHAT_NO_SUCH_KEY"}]', "is not set"),
    ("CHAT_MODELS", ",", "names no model"),
]


@pytest.mark.parametrize(("name", "value", "allowed"), NONSENSE, ids=lambda v: str(v)[:30])
def test_a_nonsense_value_stops_start_up_saying_which_variable_and_what_it_may_be(
    monkeypatch, name, value, allowed
):
    with pytest.raises(ImproperlyConfigured) as refused:
        load_settings(monkeypatch, **{name: value})

    assert str(refused.value).startswith(name)
    assert allowed in str(refused.value)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CHAT_MODELS": "a,b", "CHAT_MODEL": "c"}, "CHAT_MODEL 'c' is not one of CHAT_MODELS"),
        ({"CHAT_EVENT_LOG": "redis"}, "CHAT_EVENT_LOG=redis needs REDIS_URL"),
        ({"DJANGO_DEBUG": "0"}, "SECRET_KEY is not set"),
    ],
)
def test_settings_that_contradict_each_other_stop_start_up(monkeypatch, env, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        load_settings(monkeypatch, **env)


@pytest.mark.parametrize(
    ("env", "setting", "expected"),
    [
        ({}, "CHAT_RATE_LIMITS", {"minute": 20, "day": 500}),
        ({"CHAT_RATE_LIMITS": " 3/hour , 50/day "}, "CHAT_RATE_LIMITS", {"hour": 3, "day": 50}),
        ({"CHAT_MAX_CONCURRENT": "1"}, "CHAT_MAX_CONCURRENT", 1),
        ({"CHAT_MONTHLY_TOKEN_BUDGET": "0"}, "CHAT_MONTHLY_TOKEN_BUDGET", 0),
        ({"CHAT_CACHE_TTL": ""}, "CHAT_CACHE_TTL", 3600),
        ({"CHAT_UPSTREAM_CONNECT_TIMEOUT": "3"}, "CHAT_UPSTREAM_CONNECT_TIMEOUT", 3.0),
        ({"CHAT_SSE_HEARTBEAT": "0.5"}, "CHAT_SSE_HEARTBEAT", 0.5),
        ({"CHAT_SIGNUP_OPEN": "no"}, "CHAT_SIGNUP_OPEN", False),
        ({"CHAT_STAFF_EXEMPT": "TRUE"}, "CHAT_STAFF_EXEMPT", True),
        ({"DJANGO_DEBUG": "off", "SECRET_KEY": "k"}, "DEBUG", False),
        ({"CHAT_CACHE_MODE": "deterministic"}, "CHAT_CACHE_MODE", "deterministic"),
        ({}, "CHAT_EVENT_LOG", "memory"),
        ({"REDIS_URL": "redis://127.0.0.1:6379/0"}, "CHAT_EVENT_LOG", "redis"),
        ({"CHAT_MODEL": "b", "CHAT_MODELS": "a, b"}, "CHAT_MODELS", ["a", "b"]),
    ],
    ids=lambda v: str(v)[:40],
)
def test_good_values_are_read_as_python_values(monkeypatch, env, setting, expected):
    value = load_settings(monkeypatch, **env)[setting]

    assert (value, type(value)) == (expected, type(expected))


def test_a_log_level_and_json_models_are_read_into_their_settings(monkeypatch):
    models = '["a", {"name": "b", "label": "B", "base_url": "http://127.0.0.1:1/v1"}]'

    loaded = load_settings(monkeypatch, LOG_LEVEL="WARNING", CHAT_MODEL="b", CHAT_MODELS=models)

    assert loaded["LOGGING"]["root"]["level"] == "WARNING"
    assert loaded["CHAT_MODELS"] == ["a", "b"]
    assert loaded["CHAT_MODEL_ENDPOINTS"]["b"] == {
        "label": "B",
        "base_url": "http://127.0.0.1:1/v1",
    }


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CHAT_RATE_LIMITS", "5/fortnight"),
        ("CHAT_MAX_CONCURRENT", "two"),
        ("DJANGO_DEBUG", "maybe"),
        ("CHAT_MODELS", "[oops"),
    ],
)
def test_a_real_start_up_with_a_nonsense_value_exits_with_the_message(name, value):
    started = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env=startup_environment({"DJANGO_SETTINGS_MODULE": "chatsite.settings", name: value}),
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert started.returncode != 0
    last_line = started.stderr.strip().splitlines()[-1]
    assert last_line.startswith(f"django.core.exceptions.ImproperlyConfigured: {name} must be ")
