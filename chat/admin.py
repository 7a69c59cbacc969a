from typing import Any

from django.contrib import admin
from django.db.models import Count, QuerySet, Sum
from django.http import HttpRequest

from chat.models import Conversation, Generation, Message


class MessageInline(admin.StackedInline):
    """The transcript, read-only: editing a past message would falsify the history."""

    model = Message
    extra = 0
    can_delete = False
    show_change_link = False
    fields = ["role", "status", "content", "finish_reason", "tokens", "error", "created_at"]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="tokens (prompt / completion)")
    def tokens(self, message: Message) -> str:
        if message.prompt_tokens is None:
            return "-"
        return f"{message.prompt_tokens} / {message.completion_tokens}"

    @admin.display(description="error")
    def error(self, message: Message) -> str:
        return f"{message.error_code}: {message.error_message}" if message.error_code else "-"


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
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
        return (
            super()
            .get_queryset(request)
            .annotate(
                message_total=Count("messages", distinct=True),
                token_total=Sum("messages__prompt_tokens") + Sum("messages__completion_tokens"),
            )
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="title", ordering="title")
    def title_or_placeholder(self, conversation: Conversation) -> str:
        return str(conversation)

    @admin.display(description="messages", ordering="message_total")
    def message_count(self, conversation: Any) -> int:
        return conversation.message_total

    @admin.display(description="tokens", ordering="token_total")
    def tokens(self, conversation: Any) -> int:
        return conversation.token_total or 0


@admin.register(Generation)
class GenerationAdmin(admin.ModelAdmin):
    list_display = ["id", "owner", "model", "status", "cached", "created_at", "finished_at"]
    list_filter = ["message__status", "model", "cached", "created_at"]
    list_select_related = ["message", "conversation__owner"]
    search_fields = ["id", "conversation__owner__username", "request_id"]
    readonly_fields = [
        "id",
        "conversation",
        "message",
        "model",
        "request",
        "event_sizes",
        "last_event_id",
        "cached",
        "request_id",
        "created_at",
        "finished_at",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(ordering="conversation__owner")
    def owner(self, generation: Generation) -> Any:
        return generation.conversation.owner

    @admin.display(ordering="message__status")
    def status(self, generation: Generation) -> str:
        return generation.message.get_status_display()
