"""Signing up, logging in and out, through the pages (and as an API client would)."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.contrib.auth.models import User
from django.db import connections
from django.test import Client
from django.urls import reverse

PASSWORD = "a long pass phrase"


def sign_up(client, username: str, password: str = PASSWORD, confirm: str | None = None):
    return client.post(
        reverse("signup"),
        {"username": username, "password1": password, "password2": confirm or password},
    )


@pytest.mark.django_db
def test_it_makes_the_first_account_a_superuser_and_logs_it_in(client):
    response = sign_up(client, "root")

    assert response.status_code == 302
    assert response["Location"] == reverse("chat:home")
    first = User.objects.get(username="root")
    assert (first.is_superuser, first.is_staff) == (True, True)
    assert client.session["_auth_user_id"] == str(first.pk)
    home = client.get(reverse("chat:home")).content.decode()
    assert "you are the site&#x27;s administrator" in home
    assert client.get(reverse("admin:index")).status_code == 200


@pytest.mark.django_db
def test_it_makes_later_accounts_normal_users(client):
    User.objects.create_superuser("root", password=PASSWORD)

    response = sign_up(client, "newcomer")

    assert response.status_code == 302
    later = User.objects.get(username="newcomer")
    assert (later.is_superuser, later.is_staff) == (False, False)
    assert client.session["_auth_user_id"] == str(later.pk)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("password", "confirm", "expected"),
    [
        ("short", None, "This password is too short."),
        ("password123", None, "This password is too common."),
        ("48201937465", None, "This password is entirely numeric."),
        (PASSWORD, "something else", "The two password fields didn’t match."),
    ],
)
def test_it_refuses_weak_or_mismatched_passwords(client, password, confirm, expected):
    response = sign_up(client, "someone", password, confirm)

    assert response.status_code == 422
    assert expected in response.content.decode()
    assert not User.objects.exists()


@pytest.mark.django_db
def test_it_refuses_a_taken_username(client):
    User.objects.create_user("taken", password=PASSWORD)

    response = sign_up(client, "taken")

    assert response.status_code == 422
    assert "A user with that username already exists." in response.content.decode()
    assert User.objects.count() == 1


@pytest.mark.django_db
def test_it_says_sign_up_is_closed_and_refuses_it(client, settings):
    settings.CHAT_SIGNUP_OPEN = False

    page = client.get(reverse("signup"))
    post = sign_up(client, "intruder")
    login_page = client.get(reverse("login")).content.decode()

    assert page.status_code == 403
    assert "Sign-up is closed" in page.content.decode()
    assert post.status_code == 403
    assert not User.objects.exists()
    assert reverse("signup") not in login_page


@pytest.mark.django_db
def test_it_sends_a_logged_in_user_from_sign_up_to_the_chat(client):
    client.force_login(User.objects.create_user("ann", password=PASSWORD))

    response = client.get(reverse("signup"))

    assert response.status_code == 302
    assert response["Location"] == reverse("chat:home")


@pytest.mark.django_db
def test_it_logs_in_through_the_form_with_csrf(client):
    User.objects.create_user("ann", password=PASSWORD)
    client.handler.enforce_csrf_checks = True

    page = client.get(reverse("login"))
    token = page.cookies["csrftoken"].value
    response = client.post(
        reverse("login"),
        {"username": "ann", "password": PASSWORD, "csrfmiddlewaretoken": token},
    )

    assert page.status_code == 200
    assert 'name="csrfmiddlewaretoken"' in page.content.decode()
    assert response.status_code == 302
    assert response["Location"] == reverse("chat:home")
    assert client.get(reverse("chat:home")).status_code == 200


@pytest.mark.django_db
def test_it_refuses_a_wrong_password(client):
    User.objects.create_user("ann", password=PASSWORD)

    response = client.post(reverse("login"), {"username": "ann", "password": "wrong"})

    assert response.status_code == 200
    assert "Please enter a correct username and password." in response.content.decode()
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_it_logs_out_with_a_post(client):
    client.force_login(User.objects.create_user("ann", password=PASSWORD))

    response = client.post(reverse("logout"))

    assert response.status_code == 302
    assert response["Location"] == reverse("login")
    assert client.get(reverse("chat:home")).status_code == 302


@pytest.mark.django_db(transaction=True)
def test_of_first_sign_ups_made_at_once_exactly_one_becomes_superuser(settings):
    settings.CHAT_SIGNUPS_PER_ADDRESS = 100
    people = 8
    at_once = threading.Barrier(people)

    def sign_up_at_once(n: int) -> int:
        try:
            client = Client()
            at_once.wait()
            return sign_up(client, f"first{n}").status_code
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=people) as pool:
        statuses = list(pool.map(sign_up_at_once, range(people)))

    assert statuses == [302] * people
    assert User.objects.filter(is_superuser=True).count() == 1
    assert User.objects.filter(is_staff=True).count() == 1
