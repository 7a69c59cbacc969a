"""Start-up reads the settings from the environment and refuses nonsense, naming the variable."""

import os
import runpy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from tests.servers import ROOT

# Prefixes of every variable chatsite/settings.py reads that would change these tests.
READ_BY_SETTINGS = (
    *("CHAT_", "OPENAI_", "DJANGO_DEBUG", "REDIS_URL", "LOG_LEVEL", "SECRET_KEY"),
    *("DJANGO_ENV", "ALLOWED_HOSTS", "CSRF_TRUSTED_ORIGINS", "SECURE_", "TRUST_X_FORWARDED_PROTO"),
    "STATIC_ROOT",
)


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
    ("CHAT_MODELS", '[{"name": "a", "tools": "no"}]', '"tools" in'),
    ("CHAT_MAX_TOOL_STEPS", "-1", f"{WHOLE} 0"),
    ("DJANGO_ENV", "staging", "development or production"),
    ("CHAT_LOG_FORMAT", "xml", "text or json"),
    ("SECURE_SSL_REDIRECT", "sometimes", BOOLEAN),
    ("SECURE_HSTS_SECONDS", "1y", f"{WHOLE} 0"),
    ("SECURE_HSTS_PRELOAD", "2", BOOLEAN),
    ("TRUST_X_FORWARDED_PROTO", "nginx", BOOLEAN),
    ("CHAT_DB_POOL_MAX", "-1", f"{WHOLE} 0"),
    ("CHAT_DB_POOL_MIN", "few", f"{WHOLE} 0"),
    ("CHAT_DB_POOL_TIMEOUT", "0", "a number of at least 0.1"),
    ("CHAT_ATTACHMENT_MAX_BYTES", "10MB", f"{WHOLE} 1"),
    ("CHAT_ATTACHMENTS_PER_MESSAGE", "-1", f"{WHOLE} 0"),
    ("CHAT_ATTACHMENT_TEXT_CHARS", "0", f"{WHOLE} 1"),
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
        (
            {"CHAT_MODELS": '[{"name": "a", "vision": "yes"}]', "CHAT_MODEL": "a"},
            '"vision" in .* must be true or false',
        ),
        ({"DJANGO_DEBUG": "0"}, "SECRET_KEY is not set"),
        (
            {"CHAT_DB_POOL_MIN": "5", "CHAT_DB_POOL_MAX": "3"},
            r"CHAT_DB_POOL_MIN must be at most CHAT_DB_POOL_MAX \(3\), not '5'",
        ),
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
        ({"CHAT_TOOLS": "none"}, "CHAT_TOOLS", []),
        ({"CHAT_TOOLS": ""}, "CHAT_TOOLS", []),
        ({"CHAT_TOOLS": "a.b, c.d"}, "CHAT_TOOLS", ["a.b", "c.d"]),
        ({"CHAT_MAX_TOOL_STEPS": "0"}, "CHAT_MAX_TOOL_STEPS", 0),
    ],
    ids=lambda v: str(v)[:40],
)
def test_good_values_are_read_as_python_values(monkeypatch, env, setting, expected):
    value = load_settings(monkeypatch, **env)[setting]

    assert (value, type(value)) == (expected, type(expected))


def test_a_log_level_and_json_models_are_read_into_their_settings(monkeypatch):
    models = (
        '["a", {"name": "b", "label": "B", "base_url": "http://127.0.0.1:1/v1", "tools": false,'
        ' "vision": true}]'
    )

    loaded = load_settings(monkeypatch, LOG_LEVEL="WARNING", CHAT_MODEL="b", CHAT_MODELS=models)

    assert loaded["LOGGING"]["root"]["level"] == "WARNING"
    assert loaded["CHAT_MODELS"] == ["a", "b"]
    assert loaded["CHAT_MODEL_ENDPOINTS"]["b"] == {
        "label": "B",
        "base_url": "http://127.0.0.1:1/v1",
    }
    assert loaded["CHAT_MODELS_WITHOUT_TOOLS"] == {"b"}
    assert loaded["CHAT_VISION_MODELS"] == {"b"}
    assert loaded["CHAT_TOOLS"] == [
        "chat.tools.builtin.calculator",
        "chat.tools.builtin.current_time",
    ]


PRODUCTION = {
    "DJANGO_ENV": "production",
    "DJANGO_DEBUG": "0",
    "SECRET_KEY": "k",
    "ALLOWED_HOSTS": "chat.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://chat.example.com",
}


def test_production_turns_on_https_secure_cookies_hsts_whitenoise_and_json_logs(monkeypatch):
    loaded = load_settings(monkeypatch, **PRODUCTION)

    assert (loaded["DEBUG"], loaded["SECURE_SSL_REDIRECT"]) == (False, True)
    assert loaded["SECURE_REDIRECT_EXEMPT"] == [r"^healthz$", r"^readyz$"]
    assert (loaded["SESSION_COOKIE_SECURE"], loaded["CSRF_COOKIE_SECURE"]) == (True, True)
    assert loaded["SECURE_HSTS_SECONDS"] == 365 * 24 * 3600
    assert loaded["SECURE_HSTS_INCLUDE_SUBDOMAINS"] and loaded["SECURE_HSTS_PRELOAD"]
    assert "SECURE_PROXY_SSL_HEADER" not in loaded
    security = loaded["MIDDLEWARE"].index("chat.inline_middleware.SecurityMiddleware")
    assert loaded["MIDDLEWARE"][security + 1] == "chat.staticfiles.StaticFilesMiddleware"
    assert loaded["STORAGES"]["staticfiles"]["BACKEND"] == (
        "whitenoise.storage.CompressedManifestStaticFilesStorage"
    )


def test_development_serves_static_as_it_is_over_http_with_text_logs(monkeypatch):
    loaded = load_settings(monkeypatch)

    assert (loaded["SECURE_SSL_REDIRECT"], loaded["SECURE_HSTS_SECONDS"]) == (False, 0)
    assert loaded["SESSION_COOKIE_SECURE"] is False
    assert "chat.staticfiles.StaticFilesMiddleware" not in loaded["MIDDLEWARE"]
    assert loaded["STORAGES"]["staticfiles"]["BACKEND"] == (
        "django.contrib.staticfiles.storage.StaticFilesStorage"
    )


@pytest.mark.parametrize(
    ("env", "log_format"),
    [
        ({}, "text"),
        ({"CHAT_LOG_FORMAT": "json"}, "json"),
        (PRODUCTION, "json"),
        ({**PRODUCTION, "CHAT_LOG_FORMAT": "text"}, "text"),
    ],
    ids=lambda v: str(v)[:40],
)
def test_logs_are_json_lines_in_production_and_text_in_development_unless_chosen(
    monkeypatch, env, log_format
):
    config = load_settings(monkeypatch, **env)["LOGGING"]

    assert config["handlers"]["console"]["formatter"] == log_format
    assert log_format in config["formatters"]


@pytest.mark.parametrize(
    ("env", "setting", "expected"),
    [
        (
            {"TRUST_X_FORWARDED_PROTO": "1"},
            "SECURE_PROXY_SSL_HEADER",
            ("HTTP_X_FORWARDED_PROTO", "https"),
        ),
        ({"SECURE_HSTS_SECONDS": "3600"}, "SECURE_HSTS_SECONDS", 3600),
        ({"SECURE_HSTS_PRELOAD": "0"}, "SECURE_HSTS_PRELOAD", False),
        ({"SECURE_SSL_REDIRECT": "0"}, "SECURE_SSL_REDIRECT", False),
        ({"STATIC_ROOT": "/srv/chat/staticfiles"}, "STATIC_ROOT", Path("/srv/chat/staticfiles")),
        ({"ALLOWED_HOSTS": "a.example, b.example"}, "ALLOWED_HOSTS", ["a.example", "b.example"]),
    ],
    ids=lambda v: str(v)[:40],
)
def test_an_operator_may_change_each_production_default(monkeypatch, env, setting, expected):
    value = load_settings(monkeypatch, **{**PRODUCTION, **env})[setting]

    assert (value, type(value)) == (expected, type(expected))


POSTGRES = "postgres://chat@db.example:5432/chat"


@pytest.mark.parametrize(
    ("env", "options"),
    [
        ({}, {"pool": {"min_size": 2, "max_size": 10, "timeout": 10.0}}),
        (
            {"CHAT_DB_POOL_MIN": "0", "CHAT_DB_POOL_MAX": "40", "CHAT_DB_POOL_TIMEOUT": "3"},
            {"pool": {"min_size": 0, "max_size": 40, "timeout": 3.0}},
        ),
        ({"CHAT_DB_POOL_MAX": "0"}, {}),
        (
            {"DATABASE_URL": f"{POSTGRES}?sslmode=require"},
            {"sslmode": "require", "pool": {"min_size": 2, "max_size": 10, "timeout": 10.0}},
        ),
    ],
    ids=lambda v: str(v)[:40],
)
def test_postgresql_connections_come_from_a_pool_of_the_configured_size(monkeypatch, env, options):
    loaded = load_settings(monkeypatch, **{"DATABASE_URL": POSTGRES, **env})
    database = loaded["DATABASES"]["default"]

    assert database.get("OPTIONS", {}) == options
    assert (database["CONN_MAX_AGE"], database["CONN_HEALTH_CHECKS"]) == (0, True)


def test_sqlite_has_no_pool_whatever_the_pool_settings(monkeypatch):
    loaded = load_settings(monkeypatch, DATABASE_URL="sqlite:///x.sqlite3", CHAT_DB_POOL_MAX="5")

    assert "pool" not in loaded["DATABASES"]["default"]["OPTIONS"]


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
