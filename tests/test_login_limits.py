"""Brute force against the login and sign-up forms is refused; sessions rotate at login."""

import math
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.contrib.auth import password_validation
from django.contrib.auth.models import User
from django.contrib.sessions.backends.db import SessionStore
from django.db import connections
from django.test import Client
from django.urls import reverse

from chat import limits
from chat.views import accounts

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "a long pass phrase"
HERE = "10.0.0.1"
ELSEWHERE = "10.0.0.2"


def log_in(client, username: str, password: str, address: str = HERE, **headers):
    return client.post(
        reverse("login"),
        {"username": username, "password": password},
        REMOTE_ADDR=address,
        **headers,
    )


def fail_times(client, count: int, username: str = "ann", address: str = HERE) -> list[int]:
    return [log_in(client, username, "wrong", address).status_code for _ in range(count)]


def spray(client, count: int, first: int = 0) -> list[int]:
    """Fail once each as `count` different usernames: only the address's count grows."""
    return [log_in(client, f"user{n}", "wrong").status_code for n in range(first, first + count)]


def sign_up(client, username: str, password: str = PASSWORD, address: str = HERE):
    return client.post(
        reverse("signup"),
        {"username": username, "password1": password, "password2": password},
        REMOTE_ADDR=address,
    )


def logged_in(client) -> bool:
    return "_auth_user_id" in client.session


@pytest.fixture
def ann(transactional_db) -> User:
    return User.objects.create_user("ann", password=PASSWORD)


@pytest.fixture
def ben(transactional_db) -> User:
    return User.objects.create_user("ben", password=PASSWORD)


def test_after_five_failures_even_the_right_password_is_refused_with_429(client, ann, any_cache):
    assert fail_times(client, 5) == [200] * 5

    response = log_in(client, "ann", PASSWORD)

    page = response.content.decode()
    wait = int(response["Retry-After"])
    assert response.status_code == 429
    assert 0 < wait <= 15 * 60
    minutes = math.ceil(wait / 60)
    assert f"Too many failed logins. Try again in {minutes} minute" in page
    assert 'value="ann"' in page  # the form is there again, with the username
    assert "Please enter a correct username" not in page  # the password was not checked
    assert not logged_in(client)


def test_other_users_and_other_addresses_are_unaffected(client, ann, ben):
    fail_times(client, 5)

    assert log_in(Client(), "ben", PASSWORD).status_code == 302
    assert log_in(Client(), "ann", PASSWORD, address=ELSEWHERE).status_code == 302
    assert log_in(client, "ann", PASSWORD).status_code == 429


def test_a_successful_login_does_not_reset_other_users_counters(client, ann, ben):
    fail_times(client, 4)

    assert log_in(Client(), "ben", PASSWORD).status_code == 302

    assert fail_times(client, 2) == [200, 429]


def test_a_successful_login_does_not_reset_the_addresss_count(client, ben):
    spray(client, 29)

    assert log_in(Client(), "ben", PASSWORD).status_code == 302

    assert spray(client, 2, first=29) == [200, 429]


def test_thirty_failures_from_one_address_refuse_every_username_there(client, ann):
    assert spray(client, 30) == [200] * 30
    assert log_in(Client(), "ann", PASSWORD).status_code == 429
    assert log_in(Client(), "ann", PASSWORD, address=ELSEWHERE).status_code == 302


def test_a_form_sent_with_a_field_missing_is_not_a_failure(client, ann):
    for _ in range(10):
        assert log_in(client, "ann", "").status_code == 200

    assert log_in(client, "ann", PASSWORD).status_code == 302


def test_the_refusal_ends_with_its_window(client, ann, monkeypatch, settings):
    settings.CHAT_LOGIN_FAILURES_PER_USERNAME = 2
    start = (time.time() // accounts.USERNAME_WINDOW + 1) * accounts.USERNAME_WINDOW
    monkeypatch.setattr(limits, "_now", lambda: start)  # the first second of a window

    assert fail_times(client, 3) == [200, 200, 429]
    monkeypatch.setattr(limits, "_now", lambda: start + accounts.USERNAME_WINDOW - 0.001)
    assert log_in(client, "ann", PASSWORD).status_code == 429
    monkeypatch.setattr(limits, "_now", lambda: start + accounts.USERNAME_WINDOW)

    assert log_in(client, "ann", PASSWORD).status_code == 302


def test_attempts_sent_at_once_cannot_slip_under_the_limit(ann, any_cache):
    def attempt(_: int) -> int:
        try:
            return log_in(Client(), "ann", "wrong").status_code
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=10) as pool:
        statuses = sorted(pool.map(attempt, range(20)))

    assert statuses == [200] * 5 + [429] * 15


def test_a_forwarded_for_header_gets_no_fresh_counter(client, ann):
    # The header is the client's own say here; only the server may act on it.
    for n in range(5):
        log_in(client, "ann", "wrong", HTTP_X_FORWARDED_FOR=f"192.0.2.{n}")

    assert log_in(client, "ann", PASSWORD, HTTP_X_FORWARDED_FOR="192.0.2.9").status_code == 429


def test_five_sign_ups_an_hour_per_address(client):
    made = [sign_up(Client(), f"user{n}").status_code for n in range(5)]

    refused = sign_up(client, "one-too-many")

    assert made == [302] * 5
    assert refused.status_code == 429
    assert "Too many accounts were made from your address. Try again in" in (
        refused.content.decode()
    )
    assert 0 < int(refused["Retry-After"]) <= 3600
    assert not User.objects.filter(username="one-too-many").exists()
    assert sign_up(client, "from-elsewhere", address=ELSEWHERE).status_code == 302


def test_a_refused_sign_up_form_does_not_count(client):
    weak = [sign_up(client, f"weak{n}", password="123").status_code for n in range(5)]

    assert weak == [422] * 5
    assert sign_up(client, "strong").status_code == 302


def test_passwords_are_checked_by_djangos_validators():
    names = [type(v).__name__ for v in password_validation.get_default_password_validators()]

    assert names == [
        "UserAttributeSimilarityValidator",
        "MinimumLengthValidator",
        "CommonPasswordValidator",
        "NumericPasswordValidator",
    ]


def test_a_password_like_the_username_is_refused(client):
    # Too short, common and numeric are in tests/test_signup.py.
    response = sign_up(client, "margaret.hamilton", password="margaret.hamilton1")

    assert response.status_code == 422
    assert "The password is too similar to the username." in response.content.decode()
    assert not User.objects.exists()


def test_the_session_key_changes_at_login(client, ann):
    before = client.session
    before["seen"] = True
    before.save()

    assert log_in(client, "ann", PASSWORD).status_code == 302

    after = client.cookies["sessionid"].value
    assert after != before.session_key
    assert not SessionStore().exists(before.session_key)
    assert SessionStore(after)["_auth_user_id"] == str(ann.pk)
