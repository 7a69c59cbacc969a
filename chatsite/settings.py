"""
Settings for chatsite, read from the environment.

Every value has a safe local default so that `make run` works on a bare machine
(SQLite, the in-process event log, the local-memory cache, the offline demo model);
the real parts are switched on by environment variables alone. README.md lists them.
"""

import json
import math
import os
from pathlib import Path

import dj_database_url
import django_stubs_ext
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP

# Django's generic classes (ModelAdmin[Conversation], ...) subscriptable at run time too.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def invalid(name: str, allowed: str, value: str) -> ImproperlyConfigured:
    """The start-up error for a variable: its name, what it may be, and what it was."""
    return ImproperlyConfigured(f"{name} must be {allowed}, not {value!r}")


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise invalid(name, "a boolean: 1, true, yes or on; 0, false, no or off", value)


def env_number[N: (int, float)](name: str, default: N, *, minimum: N) -> N:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    kind = type(default)
    allowed = f"{'a whole number' if kind is int else 'a number'} of at least {minimum}"
    try:
        number = kind(value)
    except ValueError:
        raise invalid(name, allowed, value) from None
    if not math.isfinite(number) or number < minimum:  # float() reads "nan" and "inf"
        raise invalid(name, allowed, value)
    return number


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = os.environ.get(name) or default
    if value not in choices:
        raise invalid(name, f"{', '.join(choices[:-1])} or {choices[-1]}", value)
    return value


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


# "production" is the HTTPS site of docs/deploy.md: everything `manage.py check --deploy`
# asks for, WhiteNoise for static files, JSON logs.
DJANGO_ENV = env_choice("DJANGO_ENV", "development", ("development", "production"))
PRODUCTION = DJANGO_ENV == "production"

DEBUG = env_bool("DJANGO_DEBUG", False)
if PRODUCTION and DEBUG:
    # Refused rather than ignored: a debug flag left in a production environment is a
    # mistake to fix, and debug pages show settings and source to anyone.
    raise ImproperlyConfigured("DJANGO_DEBUG must be off when DJANGO_ENV=production")

SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set it in the environment, or set DJANGO_DEBUG=1 "
            "for local development with an insecure built-in key."
        )
    SECRET_KEY = "django-insecure-local-development-only"


def env_site_list(name: str, default: str, example: str) -> list[str]:
    """Read a comma-separated list that production must set: no default fits a real site."""
    values = env_list(name, "" if PRODUCTION else default)
    if PRODUCTION and not values:
        raise ImproperlyConfigured(
            f"{name} must be set when DJANGO_ENV=production: comma-separated, e.g. {example}"
        )
    return values


ALLOWED_HOSTS = env_site_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]", "chat.example.com")
CSRF_TRUSTED_ORIGINS = env_site_list("CSRF_TRUSTED_ORIGINS", "", "https://chat.example.com")

# HTTPS. Behind a proxy that ends TLS (deploy/nginx.conf) every request reaches Django as
# plain HTTP; TRUST_X_FORWARDED_PROTO=1 makes it believe the proxy's X-Forwarded-Proto.
# Only behind such a proxy: anywhere else a client could send the header itself.
if env_bool("TRUST_X_FORWARDED_PROTO", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", PRODUCTION)
# Load balancers probe each worker directly, over plain HTTP (chatsite/urls.py).
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
SECURE_HSTS_SECONDS = env_number(
    "SECURE_HSTS_SECONDS", 365 * 24 * 3600 if PRODUCTION else 0, minimum=0
)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", PRODUCTION)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", PRODUCTION)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = PRODUCTION
# Django's defaults, stated so that the whole HTTP security posture reads in one place.
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

INSTALLED_APPS = [
    # daphne before staticfiles: its runserver serves ASGI, so streams really stream.
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "chat",
]

# Every middleware here is async-capable, so a stream pins no thread. WhiteNoise (production
# only) is not: Django runs it in the request's thread, which it leaves before the response
# streams. No GZipMiddleware: it would compress text/event-stream too; compress pages at
# the proxy instead.
# Django's own middleware, run on the event loop where its hooks do no I/O
# (chat/inline_middleware.py): not a thread hop per hook and request.
MIDDLEWARE = [
    "chat.middleware.RequestIdMiddleware",
    "chat.sweeper.SweeperMiddleware",
    "chat.inline_middleware.SecurityMiddleware",
    *(["chat.staticfiles.StaticFilesMiddleware"] if PRODUCTION else []),
    "chat.inline_middleware.ContentSecurityPolicyMiddleware",
    "chat.inline_middleware.SessionMiddleware",
    "chat.inline_middleware.CommonMiddleware",
    "chat.inline_middleware.CsrfViewMiddleware",
    "chat.inline_middleware.AuthenticationMiddleware",
    "chat.inline_middleware.MessageMiddleware",
    "chat.inline_middleware.XFrameOptionsMiddleware",
]
# Django's checks for its security, clickjacking and CSRF middleware look for them by
# path; chat/checks.py checks for the classes above instead.
SILENCED_SYSTEM_CHECKS = ["security.W001", "security.W002", "security.W003"]

ROOT_URLCONF = "chatsite.urls"
ASGI_APPLICATION = "chatsite.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "chat.context_processors.chat",
            ],
        },
    },
]


def env_pool() -> dict[str, int | float] | None:
    """Read the size of psycopg's connection pool per process (None: no pool)."""
    max_size = env_number("CHAT_DB_POOL_MAX", 10, minimum=0)
    min_size = env_number("CHAT_DB_POOL_MIN", 2, minimum=0)
    timeout = env_number("CHAT_DB_POOL_TIMEOUT", 10.0, minimum=0.1)
    if max_size and min_size > max_size:
        raise invalid("CHAT_DB_POOL_MIN", f"at most CHAT_DB_POOL_MAX ({max_size})", str(min_size))
    return {"min_size": min_size, "max_size": max_size, "timeout": timeout} if max_size else None


DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        # Not kept by Django between requests under ASGI (its async docs): on PostgreSQL
        # the pool below reuses connections; SQLite's are kept by the event loop's
        # worker threads (chat/db.py).
        conn_max_age=0,
        # With the pool: a connection is checked before a request gets it, so one that
        # died with a database restart is replaced instead of failing that request.
        conn_health_checks=True,
    )
}
CHAT_DB_POOL = env_pool()
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and CHAT_DB_POOL:
    DATABASES["default"]["OPTIONS"] = {
        **DATABASES["default"].get("OPTIONS", {}),
        "pool": CHAT_DB_POOL,
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        # Generations write from background tasks while requests read: WAL lets
        # readers proceed, IMMEDIATE avoids upgrade deadlocks, timeout waits for a lock.
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "chat",
            # An unreachable Redis is a cache miss or a refusal within seconds, not a
            # worker thread held for the OS's connect timeout.
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 5, "SOCKET_TIMEOUT": 5},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "chat:home"
LOGOUT_REDIRECT_URL = "login"
CSRF_FAILURE_VIEW = "chat.views.errors.csrf_failure"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env_str("STATIC_ROOT") or BASE_DIR / "staticfiles")
# Uploaded attachments. No MEDIA_URL: nothing here is served as a static file; only
# chat/views/attachments.py serves a file, to its owner or through a share link.
MEDIA_ROOT = Path(env_str("MEDIA_ROOT") or BASE_DIR / "media")
# Production serves the collected files compressed, with their content's hash in their
# names so browsers keep them for good; development serves static/ as it is.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# No inline script or style anywhere: only our own static files may run.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:"],
    "connect-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.SELF],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "chat.logs.RequestIdFilter"}},
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
        "json": {"()": "chat.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "filters": ["request_id"],
            "formatter": env_choice(
                "CHAT_LOG_FORMAT", "json" if PRODUCTION else "text", ("text", "json")
            ),
        },
    },
    "root": {
        "handlers": ["console"],
        "level": env_choice("LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")),
    },
    "loggers": {"django.db.backends": {"level": "INFO"}},
}

# The models. OPENAI_API_KEY and OPENAI_BASE_URL are the SDK's own variables; with
# neither set the site answers with the offline "demo" model, through the same SDK.
OPENAI_API_KEY = env_str("OPENAI_API_KEY")
OPENAI_BASE_URL = env_str("OPENAI_BASE_URL")
CHAT_DEMO = not (OPENAI_API_KEY or OPENAI_BASE_URL)


def env_models(
    name: str, default: str
) -> tuple[list[str], dict[str, dict[str, str]], set[str], set[str]]:
    """Read the models a conversation may use: names, each one's own endpoint, the
    models offered no tools, and the models that see images.

    Either a comma-separated list of names served by OPENAI_BASE_URL, or a JSON list
    whose entries are names or objects {"name", "label"?, "base_url"?, "api_key_env"?,
    "tools"?, "vision"?} (api_key_env names the environment variable that holds that
    endpoint's key; "tools": false offers the model no tools; "vision": true sends it
    attached images).
    """
    raw = env_str(name).strip() or default
    if not raw.startswith("["):
        return [item.strip() for item in raw.split(",") if item.strip()], {}, set(), set()
    try:
        entries = json.loads(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(
            f"{name} must be comma-separated names or a JSON list; it is not valid JSON: {exc}"
        ) from None
    names, endpoints, without_tools, vision = [], {}, set(), set()
    for entry in entries if isinstance(entries, list) else [None]:
        spec = {"name": entry} if isinstance(entry, str) else entry
        if not isinstance(spec, dict) or "name" not in spec:
            raise ImproperlyConfigured(f"{name}: each entry needs a name, not {entry!r}")
        if not isinstance(spec.get("tools", True), bool):
            raise ImproperlyConfigured(f'{name}: "tools" in {spec} must be true or false')
        if not isinstance(spec.get("vision", False), bool):
            raise ImproperlyConfigured(f'{name}: "vision" in {spec} must be true or false')
        if not spec.pop("tools", True):
            without_tools.add(spec["name"])
        if spec.pop("vision", False):
            vision.add(spec["name"])
        unknown = set(spec) - {"name", "label", "base_url", "api_key_env"}
        if unknown:
            raise ImproperlyConfigured(f"{name}: unknown keys {sorted(unknown)} in {spec}")
        if not all(isinstance(value, str) and value for value in spec.values()):
            raise ImproperlyConfigured(f"{name}: the values in {spec} must be non-empty strings")
        endpoint = {"label": spec.get("label", spec["name"]), "base_url": spec.get("base_url", "")}
        if spec.get("api_key_env"):
            if spec["api_key_env"] not in os.environ:
                raise ImproperlyConfigured(
                    f"{name}: model {spec['name']!r} reads its key from "
                    f"{spec['api_key_env']}, which is not set"
                )
            endpoint["api_key"] = os.environ[spec["api_key_env"]]
        names.append(spec["name"])
        endpoints[spec["name"]] = endpoint
    return names, endpoints, without_tools, vision


CHAT_MODEL = env_str("CHAT_MODEL", "demo" if CHAT_DEMO else "gpt-4o-mini")
CHAT_MODELS, CHAT_MODEL_ENDPOINTS, CHAT_MODELS_WITHOUT_TOOLS, CHAT_VISION_MODELS = env_models(
    "CHAT_MODELS", CHAT_MODEL
)
if not CHAT_MODELS:
    raise ImproperlyConfigured("CHAT_MODELS names no model")
if CHAT_MODEL not in CHAT_MODELS:
    raise ImproperlyConfigured(f"CHAT_MODEL {CHAT_MODEL!r} is not one of CHAT_MODELS {CHAT_MODELS}")
CHAT_DEMO_TOKEN_DELAY = env_number("CHAT_DEMO_TOKEN_DELAY", 0.03, minimum=0.0)

# Seconds: connecting to the model, waiting for each read from it, and the whole answer.
CHAT_UPSTREAM_CONNECT_TIMEOUT = env_number("CHAT_UPSTREAM_CONNECT_TIMEOUT", 5.0, minimum=0.1)
CHAT_UPSTREAM_READ_TIMEOUT = env_number("CHAT_UPSTREAM_READ_TIMEOUT", 60.0, minimum=0.1)
CHAT_GENERATION_TIMEOUT = env_number("CHAT_GENERATION_TIMEOUT", 600.0, minimum=1.0)

# The tools offered to models (chat/tools/): dotted paths to @tool functions; empty or
# "none" for none. chat.tools.builtin.search_conversations is there to add. A model may
# ask for tools, get their results and ask again CHAT_MAX_TOOL_STEPS times.
CHAT_TOOLS = (
    ["chat.tools.builtin.calculator", "chat.tools.builtin.current_time"]
    if "CHAT_TOOLS" not in os.environ
    else [path for path in env_list("CHAT_TOOLS") if path != "none"]
)
CHAT_MAX_TOOL_STEPS = env_number("CHAT_MAX_TOOL_STEPS", 5, minimum=0)
# Personal API keys (chat/api_keys.py) a user may have at once.
CHAT_MAX_API_KEYS = env_number("CHAT_MAX_API_KEYS", 10, minimum=0)
# On shutdown (the ASGI lifespan's, under uvicorn or granian), running answers have this
# long to finish; the rest are stored as interrupted and their readers told so.
CHAT_SHUTDOWN_GRACE = env_number("CHAT_SHUTDOWN_GRACE", 30.0, minimum=0.0)
CHAT_UPSTREAM_MAX_RETRIES = env_number("CHAT_UPSTREAM_MAX_RETRIES", 2, minimum=0)
# Connections to the model per process and endpoint: one per running answer.
CHAT_UPSTREAM_MAX_CONNECTIONS = env_number("CHAT_UPSTREAM_MAX_CONNECTIONS", 20_000, minimum=1)

CHAT_MAX_MESSAGE_CHARS = env_number("CHAT_MAX_MESSAGE_CHARS", 20_000, minimum=1)
CHAT_SIGNUP_OPEN = env_bool("CHAT_SIGNUP_OPEN", True)
# Against guessing passwords, per client address: failed logins at one username in 15
# minutes, failed logins at any username in an hour, and accounts made in an hour.
CHAT_LOGIN_FAILURES_PER_USERNAME = env_number("CHAT_LOGIN_FAILURES_PER_USERNAME", 5, minimum=1)
CHAT_LOGIN_FAILURES_PER_ADDRESS = env_number("CHAT_LOGIN_FAILURES_PER_ADDRESS", 30, minimum=1)
CHAT_SIGNUPS_PER_ADDRESS = env_number("CHAT_SIGNUPS_PER_ADDRESS", 5, minimum=1)
# Seconds between heartbeat comments on an open stream, and the client's reconnect delay.
CHAT_SSE_HEARTBEAT = env_number("CHAT_SSE_HEARTBEAT", 15.0, minimum=0.01)
CHAT_SSE_RETRY_MS = env_number("CHAT_SSE_RETRY_MS", 1000, minimum=0)
# Seconds a request waits for its turn to write to SQLite before it gets a 503 (chat/db.py).
CHAT_DB_WRITE_WAIT = env_number("CHAT_DB_WRITE_WAIT", 10.0, minimum=0.1)
# How long a stream URL's token admits its reader without a session lookup (stream_access).
CHAT_STREAM_TOKEN_MAX_AGE = env_number("CHAT_STREAM_TOKEN_MAX_AGE", 3600, minimum=0)
# Seconds between writes of a streaming answer's partial text to the database.
CHAT_CHECKPOINT_INTERVAL = env_number("CHAT_CHECKPOINT_INTERVAL", 2.0, minimum=0.0)

# Where answers' events live while they stream: "memory" (one process) or "redis".
CHAT_EVENT_LOG = env_choice(
    "CHAT_EVENT_LOG", "redis" if REDIS_URL else "memory", ("memory", "redis")
)
if CHAT_EVENT_LOG == "redis" and not REDIS_URL:
    raise ImproperlyConfigured("CHAT_EVENT_LOG=redis needs REDIS_URL")
# Seconds a finished answer's events stay in Redis (after that they replay from the database).
CHAT_EVENT_LOG_RETAIN = env_number("CHAT_EVENT_LOG_RETAIN", 300, minimum=1)
# Events kept per answer in Redis, a safety bound (coalesced deltas rarely reach it).
CHAT_EVENT_LOG_MAXLEN = env_number("CHAT_EVENT_LOG_MAXLEN", 100_000, minimum=100)
CHAT_REDIS_MAX_CONNECTIONS = env_number("CHAT_REDIS_MAX_CONNECTIONS", 2000, minimum=10)
# Seconds between a running answer's "still alive" signals; three missed and readers
# and the sweeper treat its process as gone.
CHAT_LIVENESS_INTERVAL = env_number("CHAT_LIVENESS_INTERVAL", 5.0, minimum=0.05)
# Seconds between checks for a cancel from another process (Redis).
CHAT_CANCEL_POLL_INTERVAL = env_number("CHAT_CANCEL_POLL_INTERVAL", 0.2, minimum=0.01)
# The response cache: an identical request (model, parameters, every message) is answered
# from the cache for CHAT_CACHE_TTL seconds (0: no cache). CHAT_CACHE_MODE "all" caches
# every complete answer; "deterministic" only those asked with temperature 0.
CHAT_CACHE_TTL = env_number("CHAT_CACHE_TTL", 3600, minimum=0)
CHAT_CACHE_MODE = env_choice("CHAT_CACHE_MODE", "all", ("all", "deterministic"))


def env_rates(name: str, default: str) -> dict[str, int]:
    """Read limits like "20/minute,500/day" into {"minute": 20, "day": 500}."""
    allowed = (
        "limits like 20/minute,100/hour,500/day: a whole number of at least 1 "
        "per minute, hour or day, each period at most once"
    )
    rates: dict[str, int] = {}
    for item in filter(None, (item.strip() for item in env_str(name, default).split(","))):
        count, _, period = item.partition("/")
        # isascii(): isdigit() is true of "²", which int() refuses.
        counted = count.isascii() and count.isdigit() and int(count) >= 1
        if not counted or period not in ("minute", "hour", "day") or period in rates:
            raise invalid(name, allowed, item)
        rates[period] = int(count)
    return rates


# Per user: messages per minute/hour/day, answers streaming at once, tokens per month.
CHAT_RATE_LIMITS = env_rates("CHAT_RATE_LIMITS", "20/minute,500/day")
CHAT_MAX_CONCURRENT = env_number("CHAT_MAX_CONCURRENT", 2, minimum=1)
CHAT_MONTHLY_TOKEN_BUDGET = env_number("CHAT_MONTHLY_TOKEN_BUDGET", 0, minimum=0)
CHAT_STAFF_EXEMPT = env_bool("CHAT_STAFF_EXEMPT", True)
# Tokens of conversation sent upstream at most: the oldest messages are left out to fit.
CHAT_CONTEXT_TOKENS = env_number("CHAT_CONTEXT_TOKENS", 16_000, minimum=100)

# Attachments: bytes per file, files per message, characters of text kept from a text
# file or a PDF, pages of a PDF read, and pixels of an image (width times height) decoded.
CHAT_ATTACHMENT_MAX_BYTES = env_number("CHAT_ATTACHMENT_MAX_BYTES", 10 * 1024 * 1024, minimum=1)
CHAT_ATTACHMENTS_PER_MESSAGE = env_number("CHAT_ATTACHMENTS_PER_MESSAGE", 5, minimum=0)
CHAT_ATTACHMENT_TEXT_CHARS = env_number("CHAT_ATTACHMENT_TEXT_CHARS", 100_000, minimum=1)
CHAT_ATTACHMENT_PDF_PAGES = env_number("CHAT_ATTACHMENT_PDF_PAGES", 100, minimum=1)
CHAT_ATTACHMENT_MAX_PIXELS = env_number("CHAT_ATTACHMENT_MAX_PIXELS", 40_000_000, minimum=1)

# Seconds between sweeps for answers whose process died; 0 turns the sweeper off.
CHAT_SWEEP_INTERVAL = env_number("CHAT_SWEEP_INTERVAL", 60.0, minimum=0.0)
# Seconds an answer may run with no one reading before it is cancelled; 0 never.
CHAT_ABANDON_AFTER = env_number("CHAT_ABANDON_AFTER", 300.0, minimum=0.0)
