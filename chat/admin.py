from typing import Any

from asgiref.sync import async_to_sync
from django.contrib import admin
from django.db.models import Count, Model, OuterRef, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from chat import feedback, usage
from chat import generation as generations
from chat.branches import Tree
from chat.export import tool_call_text
from chat.models import (
    ApiKey,
    Attachment,
    Conversation,
    Feedback,
    Generation,
    Message,
    ShareLink,
    Usage,
)


class RecordAdmin[M: Model](admin.ModelAdmin[M]):
    """Rows the application writes: read here, never made or changed by hand."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class RevocableAdmin[M: Model](RecordAdmin[M]):
    """Things revoked rather than deleted in bulk (API keys, share links): what was done
    with them keeps its record. (One goes with its owner, or from its own page.)"""

    actions = ["revoke"]

    def get_actions(
        self,
        request: HttpRequest,
        action_location: admin.ActionLocation = admin.ActionLocation.CHANGE_LIST,
    ) -> dict[str, Any]:
        actions = super().get_actions(request, action_location)
        actions.pop("delete_selected", None)
        return actions

    @admin.action(description="Revoke the selected %(verbose_name_plural)s")
    def revoke(self, request: HttpRequest, queryset: QuerySet[M]) -> None:
        revoked = queryset.filter(revoked_at=None).update(revoked_at=timezone.now())
        self.message_user(request, f"Revoked {revoked} {self.opts.verbose_name_plural}.")


class MessageInline(admin.StackedInline[Message, Conversation]):
    """The transcript, read-only: editing a past message would falsify the history.

    It follows the branch on screen (chat/branches.py); `version` tells where a message
    stands among the versions of its turn.
    """

    model = Message
    extra = 0
    can_delete = False
    show_change_link = False
    fields = (
        "role",
        "version",
        "status",
        "reasoning",
        "content",
        "tools",
        "finish_reason",
        "tokens",
        "error",
        "feedback_given",
        "created_at",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[Message]:
        return super().get_queryset(request).select_related("feedback")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_formset(self, request: HttpRequest, obj: Any = None, **kwargs: Any) -> Any:
        formset = super().get_formset(request, obj, **kwargs)
        tree = Tree(obj.messages.all() if obj is not None else [])
        branch = [message.pk for message in tree.current(obj)] if obj is not None else []
        # The admin makes its inlines anew for each request: this is this request's tree.
        self.versions = {message.pk: tree.versions(message) for message in tree.messages}

        class BranchFormSet(formset):  # type: ignore[valid-type,misc]
            def get_queryset(self) -> QuerySet[Message]:
                shown: QuerySet[Message] = super().get_queryset()
                return shown.filter(pk__in=branch)

        return BranchFormSet

    @admin.display(description="version")
    def version(self, message: Message) -> str:
        versions = getattr(self, "versions", {}).get(message.pk)
        return f"{versions.number} of {versions.count}" if versions else "-"

    @admin.display(description="feedback")
    def feedback_given(self, message: Message) -> str:
        given = feedback.of(message)
        if given is None:
            return "-"
        return (
            f"{given.get_rating_display()}: {given.comment}"
            if given.comment
            else given.get_rating_display()
        )

    @admin.display(description="tokens (prompt / completion)")
    def tokens(self, message: Message) -> str:
        if message.prompt_tokens is None:
            return "-"
        return f"{message.prompt_tokens} / {message.completion_tokens}"

    @admin.display(description="tool calls")
    def tools(self, message: Message) -> str:
        return "\n".join(map(tool_call_text, message.tool_calls)) or "-"

    @admin.display(description="error")
    def error(self, message: Message) -> str:
        return f"{message.error_code}: {message.error_message}" if message.error_code else "-"


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin[Conversation]):
    list_display = [
        "title_or_placeholder",
        "owner",
        "model",
        "message_count",
        "tokens",
        "updated_at",
    ]
    list_filter = ["model", "messages__status", "updated_at"]
    list_select_related = ["owner"]
    search_fields = ["title", "messages__content", "owner__username"]
    date_hierarchy = "updated_at"
    readonly_fields = ["id", "owner", "created_at", "updated_at"]
    fields = ["id", "owner", "title", "model", "system_prompt", "created_at", "updated_at"]
    inlines = [MessageInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Conversation]:
        # Subqueries, not aggregates over a join: a filter or search on messages joins them
        # again, and a Sum over both joins would count every message once per match.
        return (
            super()
            .get_queryset(request)
            .annotate(
                message_total=Coalesce(_per_conversation(Count("pk")), 0),
                token_total=_per_conversation(Sum("prompt_tokens") + Sum("completion_tokens")),
            )
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="title", ordering="title")
    def title_or_placeholder(self, conversation: Conversation) -> str:
        return str(conversation)

    @admin.display(description="messages", ordering="message_total")
    def message_count(self, conversation: Any) -> int:
        return int(conversation.message_total)

    @admin.display(description="tokens", ordering="token_total")
    def tokens(self, conversation: Any) -> int:
        return int(conversation.token_total or 0)


def _per_conversation(aggregate: Any) -> Subquery:
    """The aggregate over the messages of each conversation in the outer query."""
    messages = Message.objects.filter(conversation=OuterRef("pk")).order_by()
    return Subquery(messages.values("conversation").annotate(value=aggregate).values("value"))


class RunningFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("running", "Running now"), ("finished", "Finished")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "running":
            return queryset.filter(last_event_id=None)
        if self.value() == "finished":
            return queryset.exclude(last_event_id=None)
        return queryset


@admin.register(Generation)
class GenerationAdmin(RecordAdmin[Generation]):
    """Answers, with the ones in progress: who, which model, how old, where it runs."""

    list_display = [
        "id",
        "owner",
        "model",
        "status",
        "age",
        "events",
        "process",
        "cached",
        "created_at",
    ]
    list_filter = [RunningFilter, "message__status", "model", "cached", "created_at"]
    actions = ["cancel"]
    list_select_related = ["message", "conversation__owner"]
    search_fields = ["id", "conversation__owner__username", "request_id"]
    readonly_fields = [
        "id",
        "conversation",
        "message",
        "model",
        "request",
        "event_layout",
        "last_event_id",
        "cached",
        "request_id",
        "process",
        "created_at",
        "finished_at",
    ]

    @admin.display(ordering="conversation__owner")
    def owner(self, generation: Generation) -> Any:
        return generation.conversation.owner

    @admin.display(ordering="message__status")
    def status(self, generation: Generation) -> str:
        return generation.message.get_status_display()

    @admin.display(description="age", ordering="created_at")
    def age(self, generation: Generation) -> str:
        end = generation.finished_at or timezone.now()
        return f"{(end - generation.created_at).total_seconds():.0f} s"

    @admin.display(description="events (at last checkpoint)")
    def events(self, generation: Generation) -> int:
        return len(generation.event_layout)

    @admin.action(description="Stop the selected answers")
    def cancel(self, request: HttpRequest, queryset: QuerySet[Generation]) -> None:
        running = list(queryset.filter(last_event_id=None))
        for generation in running:
            async_to_sync(generations.cancel)(generation)
        self.message_user(request, f"Asked {len(running)} running answer(s) to stop.")


KEY_FIELDS = ("name", "user", "prefix", "created_at", "last_used_at", "expires_at", "revoked_at")


@admin.register(ApiKey)
class ApiKeyAdmin(RevocableAdmin[ApiKey]):
    """Personal API keys, by name and prefix (the keys themselves are not kept)."""

    list_display = KEY_FIELDS
    list_filter = [("revoked_at", admin.EmptyFieldListFilter), "created_at"]
    list_select_related = ["user"]
    search_fields = ["name", "prefix", "user__username"]
    readonly_fields = KEY_FIELDS
    fields = KEY_FIELDS


SHARE_FIELDS = ("conversation", "owner", "leaf", "token", "created_at", "revoked_at")


@admin.register(ShareLink)
class ShareLinkAdmin(RevocableAdmin[ShareLink]):
    """Share links: which conversation, whose, since when, and revoked or not."""

    list_display = ("conversation", "owner", "created_at", "revoked_at")
    list_filter = [("revoked_at", admin.EmptyFieldListFilter), "created_at"]
    list_select_related = ["conversation__owner"]
    search_fields = ["conversation__title", "conversation__owner__username"]
    readonly_fields = SHARE_FIELDS
    fields = SHARE_FIELDS

    @admin.display(ordering="conversation__owner")
    def owner(self, link: ShareLink) -> Any:
        return link.conversation.owner


FEEDBACK_FIELDS = ("message", "rating", "comment", "answer", "created_at", "updated_at")


@admin.register(Feedback)
class FeedbackAdmin(RecordAdmin[Feedback]):
    """What users thought of answers, read-only: filter by rating, model and date."""

    list_display = ("updated_at", "rating", "short_comment", "chat_model", "owner", "conversation")
    list_filter = ["rating", "message__conversation__model", "updated_at"]
    list_select_related = ["message__conversation__owner"]
    search_fields = ["comment", "message__conversation__owner__username"]
    date_hierarchy = "updated_at"
    readonly_fields = FEEDBACK_FIELDS
    fields = FEEDBACK_FIELDS

    @admin.display(description="comment", ordering="comment")
    def short_comment(self, given: Feedback) -> str:
        return given.comment[:80] or "-"

    @admin.display(description="model", ordering="message__conversation__model")
    def chat_model(self, given: Feedback) -> str:
        return given.message.conversation.model

    @admin.display(ordering="message__conversation__owner")
    def owner(self, given: Feedback) -> Any:
        return given.message.conversation.owner

    @admin.display(ordering="message__conversation")
    def conversation(self, given: Feedback) -> Any:
        return given.message.conversation

    @admin.display(description="the answer")
    def answer(self, given: Feedback) -> str:
        return given.message.content


ATTACHMENT_FIELDS = (
    "name",
    "owner",
    "kind",
    "content_type",
    "size",
    "width",
    "height",
    "message",
    "created_at",
)


@admin.register(Attachment)
class AttachmentAdmin(RecordAdmin[Attachment]):
    """Files users attached: what they are and whose, read-only (the bytes are theirs)."""

    list_display = ("name", "owner", "kind", "size", "message", "created_at")
    list_filter = ["kind", "created_at"]
    list_select_related = ["owner", "message"]
    search_fields = ["name", "owner__username"]
    readonly_fields = ATTACHMENT_FIELDS
    fields = ATTACHMENT_FIELDS


@admin.register(Usage)
class UsageAdmin(RecordAdmin[Usage]):
    """Tokens per answer, read-only, under per-user and per-model totals.

    The totals are of every row the changelist selects, not only of the page shown: they
    follow its filters, search and date drill-down. Pick a range with "created at", or
    any with ?created_at__gte=...&created_at__lt=... in the URL.
    """

    list_display = [
        "created_at",
        "user",
        "model",
        "prompt_tokens",
        "completion_tokens",
        "cached",
        "estimated",
        "api_key",
    ]
    list_filter = [
        "created_at",
        "model",
        "cached",
        "estimated",
        ("user", admin.RelatedOnlyFieldListFilter),
        ("api_key", admin.EmptyFieldListFilter),
    ]
    list_select_related = ["user", "api_key"]
    search_fields = ["user__username", "model"]
    date_hierarchy = "created_at"

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        response = super().changelist_view(request, extra_context)
        # A redirect (bad filter parameters) or an action's response has no changelist.
        context = getattr(response, "context_data", None)
        if not context or "cl" not in context:
            return response
        rows = context["cl"].queryset
        context["totals_overall"] = usage.overall(rows)
        context["totals_by_user"] = usage.totals(rows, "user")
        context["totals_by_model"] = usage.totals(rows, "model")
        return response
