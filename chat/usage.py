"""
Token accounting: what each answer cost, recorded once it ends.

Counts come from the upstream's usage chunk; when it sends none they are counted here
(tiktoken encodings for known models, an estimate otherwise) and flagged as estimated.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count, F, Q, QuerySet, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from chat import context
from chat.events import TokenUsage
from chat.models import Generation, Usage


def record(
    *,
    user_id: Any,
    request: dict[str, Any],
    text: str,
    usage: TokenUsage | None,
    cached: bool,
    estimated: bool = False,
    generation: Generation | None = None,
    api_key_id: Any = None,
) -> Usage:
    """Store the tokens one answer cost; `generation` is None for a stateless completion.

    `estimated`: the usage given was counted by us, not reported by the upstream.
    """
    model = request["model"]
    if usage:
        prompt, completion = usage["prompt_tokens"], usage["completion_tokens"]
    else:
        prompt, _ = context.message_tokens(request["messages"], model)
        completion, _ = context.count_tokens(text, model)
        estimated = True
    return Usage.objects.create(
        user_id=user_id,
        model=model,
        prompt_tokens=prompt,
        completion_tokens=completion,
        estimated=estimated,
        cached=cached,
        generation=generation,
        api_key_id=api_key_id,
    )


# Reading it back: totals for the admin and for a user's usage page.

# "billed" leaves out answers from the cache, which cost nothing upstream, as the monthly
# budget does (chat/limits.py).
_SUMS = {
    "requests": Count("pk"),
    "prompt": Sum("prompt_tokens", default=0),
    "completion": Sum("completion_tokens", default=0),
    "billed": Sum(F("prompt_tokens") + F("completion_tokens"), filter=Q(cached=False), default=0),
    "from_cache": Count("pk", filter=Q(cached=True)),
    "estimates": Count("pk", filter=Q(estimated=True)),
}

# What rows are grouped by, and the order of the groups.
_GROUPS = {
    "user": (F("user__username"), "key"),
    "model": (F("model"), "key"),
    "day": (TruncDate("created_at"), "-key"),
}


@dataclass(frozen=True)
class Totals:
    """Sums over usage rows that share a key: a username, a model, a day (None: all rows)."""

    key: Any
    requests: int
    prompt_tokens: int
    completion_tokens: int
    billed_tokens: int
    cached: int
    estimated: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def cached_tokens(self) -> int:
        return self.total_tokens - self.billed_tokens


@dataclass(frozen=True)
class Summary:
    """A user's own usage: this month's, per model this month, per day lately."""

    month_start: datetime
    month: Totals
    by_model: list[Totals]
    by_day: list[Totals]
    budget: int

    @property
    def remaining(self) -> int | None:
        """Tokens left of the monthly budget, or None when there is no budget."""
        if not self.budget:
            return None
        return max(self.budget - self.month.billed_tokens, 0)


def between(rows: QuerySet[Usage], start: datetime, end: datetime) -> QuerySet[Usage]:
    """Return the rows created from start (included) to end (excluded)."""
    return rows.filter(created_at__gte=start, created_at__lt=end)


def overall(rows: QuerySet[Usage]) -> Totals:
    """Sum all the rows, in one query."""
    return _totals(None, rows.order_by().aggregate(**_SUMS))


def totals(rows: QuerySet[Usage], by: str) -> list[Totals]:
    """Sum the rows per "user", "model" or "day" (newest first), in one query."""
    key, order = _GROUPS[by]
    groups = rows.order_by().values(key=key).annotate(**_SUMS).order_by(order)
    return [_totals(group["key"], group) for group in groups]


def summary(user: Any, now: datetime | None = None, days: int = 30) -> Summary:
    """Return the user's own usage this month, and per day over the last `days` days."""
    now = now or timezone.now()
    start = month_start(now)
    mine = Usage.objects.filter(user=user)
    this_month = mine.filter(created_at__gte=start)
    return Summary(
        month_start=start,
        month=overall(this_month),
        by_model=totals(this_month, "model"),
        by_day=totals(mine.filter(created_at__gte=_days_back(now, days)), "day"),
        budget=settings.CHAT_MONTHLY_TOKEN_BUDGET,
    )


def month_start(now: datetime) -> datetime:
    """The start of now's month, in UTC as chat/limits.py counts the monthly budget."""
    return now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _days_back(now: datetime, days: int) -> datetime:
    """The start of the day `days` - 1 days before now's, in the current time zone."""
    first = timezone.localdate(now) - timedelta(days=days - 1)
    return datetime.combine(first, time.min, tzinfo=timezone.get_current_timezone())


def _totals(key: Any, sums: Mapping[str, Any]) -> Totals:
    return Totals(
        key=key,
        requests=sums["requests"],
        prompt_tokens=sums["prompt"],
        completion_tokens=sums["completion"],
        billed_tokens=sums["billed"],
        cached=sums["from_cache"],
        estimated=sums["estimates"],
    )
