"""Settings for the test suite: the project's own, with a key and fast password hashing."""

import os
import tempfile
from pathlib import Path

os.environ.setdefault("SECRET_KEY", "insecure-key-for-the-test-suite-only")

from chatsite.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Tests sweep explicitly; a background sweeper would race them.
CHAT_SWEEP_INTERVAL = 0

# A file, not SQLite's shared in-memory database: Django never closes in-memory
# connections, and the tests check that streams give theirs back.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    DATABASES["default"]["TEST"] = {  # noqa: F405
        "NAME": os.path.join(tempfile.gettempdir(), f"chat-tests-{os.getpid()}.sqlite3")
    }

# Attachments go to a directory of this run's own, never the checkout's media/.
MEDIA_ROOT = Path(tempfile.mkdtemp(prefix="chat-test-media-"))
