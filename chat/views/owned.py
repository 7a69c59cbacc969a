"""The one way a view finds a user's own object: another user's looks like no object at all."""

from typing import Any

from django.core.exceptions import ObjectDoesNotExist
from django.db.models import Model, QuerySet
from django.http import Http404

from chat import db


async def owned[M: Model](queryset: QuerySet[M], pk: Any, what: str) -> M:
    """Return the object `pk` of a queryset already limited to the user's own, or raise 404."""
    found = await db.run(_get_or_none, queryset, pk)
    if found is None:
        raise Http404(f"No such {what}.")
    return found


def _get_or_none[M: Model](queryset: QuerySet[M], pk: Any) -> M | None:
    try:
        return queryset.get(pk=pk)
    except ObjectDoesNotExist:
        return None
