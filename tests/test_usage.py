"""
Usage read back: totals per user, model and day; the admin's totals over its changelist;
the user's own usage page. Rows are made directly, dated with .update().
"""

import datetime

import pytest
from django.contrib.auth.models import User
from django.urls import reverse
from django.utils import timezone

from chat import usage
from chat.admin import UsageAdmin
from chat.models import Usage

pytestmark = pytest.mark.django_db

UTC = datetime.UTC
MARCH_10 = datetime.datetime(2026, 3, 10, 12, tzinfo=UTC)


def spend(
    user: User,
    prompt: int = 10,
    completion: int = 20,
    *,
    model: str = "gpt-test",
    at: datetime.datetime | None = None,
    cached: bool = False,
    estimated: bool = False,
) -> Usage:
    row = Usage.objects.create(
        user=user,
        model=model,
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached=cached,
        estimated=estimated,
    )
    if at is not None:
        Usage.objects.filter(pk=row.pk).update(created_at=at)
    return row


def sums(totals: usage.Totals) -> tuple:
    """The figures of totals: requests, prompt, completion, total, billed, cached, estimated."""
    return (
        totals.requests,
        totals.prompt_tokens,
        totals.completion_tokens,
        totals.total_tokens,
        totals.billed_tokens,
        totals.cached,
        totals.estimated,
    )


@pytest.fixture
def staff_client(client):
    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))
    return client


@pytest.fixture
def alice_client(client, alice):
    client.force_login(alice)
    return client


# Totals


def test_totals_per_user_and_per_model_count_only_the_range(alice, bob):
    spend(alice, 10, 20, model="gpt-a", at=MARCH_10)
    spend(alice, 1, 2, model="gpt-b", at=MARCH_10)
    spend(bob, 100, 200, model="gpt-a", at=MARCH_10)
    spend(alice, 5000, 5000, model="gpt-a", at=datetime.datetime(2026, 2, 28, 23, tzinfo=UTC))
    spend(bob, 5000, 5000, model="gpt-c", at=datetime.datetime(2026, 4, 1, tzinfo=UTC))

    march = usage.between(
        Usage.objects.all(),
        datetime.datetime(2026, 3, 1, tzinfo=UTC),
        datetime.datetime(2026, 4, 1, tzinfo=UTC),
    )
    by_user = {row.key: sums(row) for row in usage.totals(march, "user")}
    by_model = {row.key: sums(row) for row in usage.totals(march, "model")}

    assert by_user == {"alice": (2, 11, 22, 33, 33, 0, 0), "bob": (1, 100, 200, 300, 300, 0, 0)}
    assert by_model == {"gpt-a": (2, 110, 220, 330, 330, 0, 0), "gpt-b": (1, 1, 2, 3, 3, 0, 0)}
    assert sums(usage.overall(march)) == (3, 111, 222, 333, 333, 0, 0)


def test_cached_answers_are_counted_but_not_billed(alice):
    spend(alice, 10, 20)
    spend(alice, 10, 20, cached=True)

    totals = usage.overall(Usage.objects.all())

    assert sums(totals) == (2, 20, 40, 60, 30, 1, 0)
    assert totals.cached_tokens == 30


def test_estimated_answers_are_counted_and_flagged(alice):
    spend(alice, 10, 20)
    spend(alice, 7, 8, estimated=True)

    (row,) = usage.totals(Usage.objects.all(), "model")

    assert sums(row) == (2, 17, 28, 45, 45, 0, 1)


def test_totals_of_no_rows_are_zero(alice):
    assert sums(usage.overall(Usage.objects.none())) == (0, 0, 0, 0, 0, 0, 0)
    assert usage.totals(Usage.objects.none(), "user") == []


def test_a_summary_is_the_users_own_this_month_and_per_day(alice, bob, settings):
    settings.CHAT_MONTHLY_TOKEN_BUDGET = 1000
    now = datetime.datetime(2026, 3, 20, 12, tzinfo=UTC)
    spend(alice, 10, 20, model="gpt-a", at=datetime.datetime(2026, 3, 20, 9, tzinfo=UTC))
    spend(alice, 1, 2, model="gpt-b", at=datetime.datetime(2026, 3, 19, 9, tzinfo=UTC))
    spend(alice, 100, 100, model="gpt-a", at=datetime.datetime(2026, 3, 19, 10, tzinfo=UTC))
    spend(alice, 50, 50, model="gpt-a", at=datetime.datetime(2026, 2, 25, 12, tzinfo=UTC))
    spend(alice, 9, 9, at=datetime.datetime(2026, 2, 1, 12, tzinfo=UTC))  # over 30 days ago
    spend(bob, 400, 400, model="gpt-a", at=datetime.datetime(2026, 3, 20, 9, tzinfo=UTC))

    summary = usage.summary(alice, now=now)

    assert summary.month_start == datetime.datetime(2026, 3, 1, tzinfo=UTC)
    assert sums(summary.month) == (3, 111, 122, 233, 233, 0, 0)
    assert [(row.key, row.requests, row.billed_tokens) for row in summary.by_model] == [
        ("gpt-a", 2, 230),
        ("gpt-b", 1, 3),
    ]
    assert [(row.key, row.billed_tokens) for row in summary.by_day] == [
        (datetime.date(2026, 3, 20), 30),
        (datetime.date(2026, 3, 19), 203),
        (datetime.date(2026, 2, 25), 100),
    ]
    assert summary.remaining == 767


def test_the_budget_left_is_never_negative_and_none_without_a_budget(alice, settings):
    spend(alice, 600, 600)

    settings.CHAT_MONTHLY_TOKEN_BUDGET = 1000
    assert usage.summary(alice).remaining == 0
    settings.CHAT_MONTHLY_TOKEN_BUDGET = 0
    assert usage.summary(alice).remaining is None


# The admin


def test_the_admin_shows_totals_per_user_and_per_model(staff_client, alice, bob):
    spend(alice, 10, 20, model="gpt-a")
    spend(alice, 10, 20, model="gpt-a", cached=True)
    spend(bob, 1, 2, model="gpt-b", estimated=True)

    response = staff_client.get("/admin/chat/usage/")

    assert response.status_code == 200
    by_user = {row.key: sums(row) for row in response.context["totals_by_user"]}
    by_model = {row.key: sums(row) for row in response.context["totals_by_model"]}
    assert by_user == {"alice": (2, 20, 40, 60, 30, 1, 0), "bob": (1, 1, 2, 3, 3, 0, 1)}
    assert by_model == {"gpt-a": (2, 20, 40, 60, 30, 1, 0), "gpt-b": (1, 1, 2, 3, 3, 0, 1)}
    assert sums(response.context["totals_overall"]) == (3, 21, 42, 63, 33, 1, 1)
    assert b"Per user" in response.content and b"Per model" in response.content


def test_the_admin_totals_follow_the_filters_and_the_dates_chosen(staff_client, alice, bob):
    spend(alice, 10, 20, model="gpt-a", at=MARCH_10)
    spend(bob, 1, 2, model="gpt-b", at=MARCH_10)
    spend(alice, 1000, 1000, model="gpt-a", at=datetime.datetime(2026, 2, 10, tzinfo=UTC))

    by_model = staff_client.get("/admin/chat/usage/", {"model": "gpt-b"})
    by_month = staff_client.get(
        "/admin/chat/usage/", {"created_at__year": "2026", "created_at__month": "3"}
    )
    by_range = staff_client.get(
        "/admin/chat/usage/",
        {"created_at__gte": "2026-02-01 00:00+00:00", "created_at__lt": "2026-03-01 00:00+00:00"},
    )

    assert [row.key for row in by_model.context["totals_by_user"]] == ["bob"]
    assert sums(by_model.context["totals_overall"]) == (1, 1, 2, 3, 3, 0, 0)
    assert {row.key: row.total_tokens for row in by_month.context["totals_by_user"]} == {
        "alice": 30,
        "bob": 3,
    }
    assert sums(by_range.context["totals_overall"]) == (1, 1000, 1000, 2000, 2000, 0, 0)


def test_the_admin_totals_cover_every_page_of_the_list(staff_client, alice, monkeypatch):
    monkeypatch.setattr(UsageAdmin, "list_per_page", 1)
    spend(alice, 10, 20)
    spend(alice, 10, 20)

    response = staff_client.get("/admin/chat/usage/")

    assert len(response.context["cl"].result_list) == 1
    assert response.context["totals_overall"].requests == 2


def test_the_admin_is_read_only_for_usage(staff_client, alice):
    row = spend(alice, 10, 20)
    change_url = f"/admin/chat/usage/{row.pk}/change/"

    assert staff_client.get("/admin/chat/usage/add/").status_code == 403
    assert staff_client.get(change_url).status_code == 200
    assert staff_client.post(change_url, {"prompt_tokens": 0}).status_code == 403
    row.refresh_from_db()
    assert row.prompt_tokens == 10


# The user's usage page


def test_the_usage_page_shows_only_ones_own_usage(alice_client, alice, bob):
    spend(alice, 1200, 34, model="gpt-alice")
    spend(bob, 98765, 4321, model="gpt-bob-only")

    response = alice_client.get(reverse("chat:usage"))

    assert response.status_code == 200
    html = response.content.decode()
    assert "1,234" in html and "gpt-alice" in html
    assert "gpt-bob-only" not in html
    assert "98,765" not in html and "103,086" not in html


def test_the_usage_page_leaves_out_last_month(alice_client, alice):
    last_month = usage.month_start(timezone.now()) - datetime.timedelta(days=40)
    spend(alice, 5000, 5000, model="gpt-old", at=last_month)

    html = alice_client.get(reverse("chat:usage")).content.decode()

    assert "gpt-old" not in html and "10,000" not in html
    assert "No answers this month yet." in html


def test_the_usage_page_shows_the_budget_left_and_what_came_from_the_cache(
    alice_client, alice, settings
):
    settings.CHAT_MONTHLY_TOKEN_BUDGET = 10_000
    spend(alice, 1000, 500)
    spend(alice, 2000, 2000, cached=True)

    html = alice_client.get(reverse("chat:usage")).content.decode()

    assert "Your monthly budget is 10,000 tokens" in html
    assert "<strong>8,500</strong> left" in html
    assert "1 answer came from the cache" in html and "(4,000 tokens)" in html
    assert 'max="10000" value="1500"' in html


def test_the_usage_page_states_the_limits(alice_client, settings):
    settings.CHAT_RATE_LIMITS = {"minute": 20, "day": 500}
    settings.CHAT_MAX_CONCURRENT = 2
    settings.CHAT_MONTHLY_TOKEN_BUDGET = 0

    html = alice_client.get(reverse("chat:usage")).content.decode()

    assert "20 messages per minute" in html
    assert "500 messages per day" in html
    assert "2 answers streaming at once" in html
    assert "No monthly token budget" in html
    assert "exempt" not in html


def test_the_usage_page_reads_in_a_fixed_number_of_queries(
    alice_client, alice, django_assert_num_queries
):
    for model in ("gpt-a", "gpt-b", "gpt-c"):
        spend(alice, model=model)
        spend(alice, model=model, at=timezone.now() - datetime.timedelta(days=3))

    # Session, user, this month's sums, per model, per day, the sidebar.
    with django_assert_num_queries(6):
        response = alice_client.get(reverse("chat:usage"))

    assert response.status_code == 200


def test_the_sidebar_links_to_the_usage_page(alice_client):
    home = alice_client.get(reverse("chat:home")).content.decode()
    page = alice_client.get(reverse("chat:usage")).content.decode()

    assert f'href="{reverse("chat:usage")}"' in home
    assert f'href="{reverse("chat:usage")}" aria-current="page"' in page


def test_anonymous_visitors_are_sent_to_the_login_page(client):
    url = reverse("chat:usage")

    response = client.get(url)

    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next={url}"
