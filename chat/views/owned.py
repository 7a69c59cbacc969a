"""The one way a view finds a user's own object: another user's looks like no object at all."""

from typing import Any

from django.core.exceptions import ObjectDoesNotExist
from django.db.models import Model, QuerySet
from django.http import Http404


async def owned[M: Model](queryset: QuerySet[M], pk: Any, what: str) -> M:
    """Return the object `pk` of a queryset already limited to the user's own, or raise 404."""
    try:
        return await queryset.aget(pk=pk)
    except ObjectDoesNotExist:
        raise Http404(f"No such {what}.") from None
