import uuid
from typing import Any

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone


class ConversationQuerySet(models.QuerySet["Conversation"]):
    def owned_by(self, user: Any) -> "ConversationQuerySet":
        return self.filter(owner=user)


class Conversation(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.CASCADE, related_name="conversations"
    )
    title = models.CharField(max_length=200, blank=True)
    auto_title = models.BooleanField(
        default=True, help_text="The title is ours to set; false once the user names it."
    )
    model = models.CharField(max_length=100)
    system_prompt = models.TextField(blank=True)
    client_id = models.CharField(
        max_length=100,
        null=True,
        blank=True,
        unique=True,
        help_text="The chat's own id in an AI SDK front-end (/api/ui/chat).",
    )
    current_leaf = models.ForeignKey(
        "Message",
        models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="The last message of the branch on screen (chat/branches.py).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ConversationQuerySet.as_manager()

    class Meta:
        ordering = ["-updated_at"]
        indexes = [
            # The sidebar and the API list a user's conversations, newest first.
            models.Index(fields=["owner", "-updated_at"], name="conversation_owner_recent"),
        ]

    def __str__(self) -> str:
        return self.title or "New chat"

    def get_absolute_url(self) -> str:
        return reverse("chat:conversation", args=[self.pk])


class MessageQuerySet(models.QuerySet["Message"]):
    def owned_by(self, user: Any) -> "MessageQuerySet":
        return self.filter(conversation__owner=user)


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user"
        ASSISTANT = "assistant"

    class Status(models.TextChoices):
        STREAMING = "streaming"
        COMPLETE = "complete"
        ERROR = "error"
        CANCELLED = "cancelled"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    conversation = models.ForeignKey(Conversation, models.CASCADE, related_name="messages")
    parent = models.ForeignKey(
        "self",
        models.CASCADE,
        null=True,
        blank=True,
        related_name="children",
        help_text="The message this one follows; siblings are versions of one turn.",
    )
    role = models.CharField(max_length=16, choices=Role)
    content = models.TextField(blank=True)
    reasoning = models.TextField(
        blank=True, help_text="The model's thinking before its answer; never sent back to it."
    )
    thinking_seconds = models.FloatField(
        null=True, blank=True, help_text="How long the model reasoned before it went on."
    )
    tool_calls = models.JSONField(
        default=list,
        blank=True,
        help_text="The tools the answer called: id, name, arguments, then result or error.",
    )
    status = models.CharField(max_length=16, choices=Status, default=Status.COMPLETE)
    finish_reason = models.CharField(max_length=32, blank=True)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = MessageQuerySet.as_manager()

    class Meta:
        ordering = ["created_at"]
        indexes = [
            # A conversation page reads its transcript in order.
            models.Index(fields=["conversation", "created_at"], name="message_transcript"),
            # The admin and the sweeper look for answers still streaming.
            models.Index(
                fields=["status"],
                name="message_streaming",
                condition=models.Q(status="streaming"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.role}: {self.content[:60]}"

    @property
    def is_streaming(self) -> bool:
        return self.status == self.Status.STREAMING


class GenerationQuerySet(models.QuerySet["Generation"]):
    def owned_by(self, user: Any) -> "GenerationQuerySet":
        return self.filter(conversation__owner=user)

    def running(self) -> "GenerationQuerySet":
        """The answers not yet ended: no terminal event is numbered."""
        return self.filter(last_event_id=None)


class Generation(models.Model):
    """
    One answer being produced: the exact request sent upstream and how it ended.

    Its events are numbered 1, 2, 3 ...: one per entry of `event_layout` (each says
    which part of the message an event held: so many characters of its content or
    reasoning, the start or the end of a tool call; chat/answer.py), then the terminal
    `done` or `error` event, numbered `last_event_id` once the answer has ended.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    message = models.OneToOneField(Message, models.CASCADE, related_name="generation")
    conversation = models.ForeignKey(Conversation, models.CASCADE, related_name="generations")
    model = models.CharField(max_length=100)
    request = models.JSONField(help_text="The body sent to the model: model, messages, options.")
    event_layout = models.JSONField(default=list, blank=True)
    last_event_id = models.PositiveIntegerField(null=True, blank=True)
    regenerated = models.BooleanField(
        default=False, help_text="Asked for anew by the user: never answered from the cache."
    )
    continued_from = models.PositiveIntegerField(
        default=0,
        help_text="How many of the answer's events came before it (a Continue): not its own.",
    )
    cached = models.BooleanField(default=False)
    request_id = models.CharField(max_length=64, blank=True)
    api_key = models.ForeignKey(
        "ApiKey",
        models.SET_NULL,
        null=True,
        blank=True,
        related_name="generations",
        help_text="The key the answer was asked for with; none: the web chat.",
    )
    process = models.CharField(
        max_length=100, blank=True, help_text="The server process that runs it (host:pid)."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = GenerationQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # The sweeper and the admin's live list look for answers still running.
            models.Index(
                fields=["created_at"],
                name="generation_running",
                condition=models.Q(last_event_id=None),
            ),
        ]

    def __str__(self) -> str:
        return f"Generation {self.pk} ({self.model})"

    def get_stream_url(self) -> str:
        return reverse("api:generation-stream", args=[self.pk])

    def get_cancel_url(self) -> str:
        return reverse("api:generation-cancel", args=[self.pk])

    @property
    def is_finished(self) -> bool:
        return self.last_event_id is not None


class Usage(models.Model):
    """The tokens one answer cost (or, when it came from the cache, would have cost)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, models.CASCADE, related_name="usage")
    model = models.CharField(max_length=100)
    prompt_tokens = models.PositiveIntegerField()
    completion_tokens = models.PositiveIntegerField()
    estimated = models.BooleanField(
        default=False, help_text="Counted by us: the upstream reported no usage."
    )
    cached = models.BooleanField(default=False, help_text="Answered from the cache: no cost.")
    generation = models.OneToOneField(
        Generation, models.SET_NULL, null=True, blank=True, related_name="usage"
    )
    api_key = models.ForeignKey(
        "ApiKey", models.SET_NULL, null=True, blank=True, related_name="usage"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        verbose_name_plural = "usage"
        ordering = ["-created_at"]
        indexes = [
            # A user's monthly budget and usage page sum their recent rows.
            models.Index(fields=["user", "created_at"], name="usage_user_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.user} {self.model}: {self.total_tokens} tokens"

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class ApiKeyQuerySet(models.QuerySet["ApiKey"]):
    def owned_by(self, user: Any) -> "ApiKeyQuerySet":
        return self.filter(user=user)

    def active(self) -> "ApiKeyQuerySet":
        """Keys that work now: not revoked, not expired."""
        now = timezone.now()
        return self.filter(revoked_at=None).exclude(expires_at__lte=now)


class ApiKey(models.Model):
    """A personal API key (chat/api_keys.py): its owner, its name, and a hash of it."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=20, db_index=True, help_text="The key's first characters.")
    key_hash = models.CharField(max_length=64, unique=True, help_text="SHA-256 of the key.")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        verbose_name = "API key"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        expired = self.expires_at is not None and self.expires_at <= timezone.now()
        return self.revoked_at is None and not expired


def attachment_path(attachment: "Attachment", filename: str) -> str:
    # The user's file name is never part of a path: it is shown, not trusted.
    extension = Attachment.EXTENSIONS.get(attachment.content_type, "bin")
    return f"attachments/{attachment.owner_id}/{attachment.pk}.{extension}"


def thumbnail_path(attachment: "Attachment", filename: str) -> str:
    return f"attachments/{attachment.owner_id}/{attachment.pk}-thumb.webp"


class AttachmentQuerySet(models.QuerySet["Attachment"]):
    def owned_by(self, user: Any) -> "AttachmentQuerySet":
        return self.filter(owner=user)

    def unsent(self) -> "AttachmentQuerySet":
        """Uploaded, not yet sent with a message."""
        return self.filter(message=None)


class Attachment(models.Model):
    """A file sent with a user's message: an image the model sees, or text it reads."""

    class Kind(models.TextChoices):
        IMAGE = "image"
        TEXT = "text"
        PDF = "pdf"

    EXTENSIONS = {
        "image/png": "png",
        "image/jpeg": "jpg",
        "image/webp": "webp",
        "image/gif": "gif",
        "application/pdf": "pdf",
        "text/plain": "txt",
    }

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, models.CASCADE, related_name="attachments")
    message = models.ForeignKey(
        Message,
        models.CASCADE,
        null=True,
        blank=True,
        related_name="attachments",
        help_text="The message it was sent with; none: uploaded, not sent yet.",
    )
    kind = models.CharField(max_length=8, choices=Kind)
    name = models.CharField(max_length=255, help_text="The file's name as uploaded: shown only.")
    content_type = models.CharField(max_length=100, help_text="As its content says, not its name.")
    size = models.PositiveIntegerField()
    file = models.FileField(upload_to=attachment_path, max_length=200)
    thumbnail = models.FileField(upload_to=thumbnail_path, max_length=200, blank=True)
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    text = models.TextField(blank=True, help_text="The text read from a text file or a PDF.")
    created_at = models.DateTimeField(auto_now_add=True)

    objects = AttachmentQuerySet.as_manager()

    class Meta:
        ordering = ["created_at"]

    def __str__(self) -> str:
        return self.name


class ShareLinkQuerySet(models.QuerySet["ShareLink"]):
    def owned_by(self, user: Any) -> "ShareLinkQuerySet":
        return self.filter(conversation__owner=user)

    def active(self) -> "ShareLinkQuerySet":
        return self.filter(revoked_at=None)


class ShareLink(models.Model):
    """A read-only view of a conversation's branch, up to `leaf`, for anyone with the URL."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    conversation = models.ForeignKey(Conversation, models.CASCADE, related_name="share_links")
    leaf = models.ForeignKey(
        Message,
        models.CASCADE,
        related_name="+",
        help_text="The last message shown: the branch on screen when it was shared.",
    )
    token = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ShareLinkQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Share of {self.conversation}"

    def get_absolute_url(self) -> str:
        return reverse("shared", args=[self.token])

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class FeedbackQuerySet(models.QuerySet["Feedback"]):
    def owned_by(self, user: Any) -> "FeedbackQuerySet":
        return self.filter(message__conversation__owner=user)


class Feedback(models.Model):
    """What the user thought of an answer: thumbs up or down, and why."""

    class Rating(models.TextChoices):
        UP = "up", "Good"
        DOWN = "down", "Bad"

    message = models.OneToOneField(Message, models.CASCADE, related_name="feedback")
    rating = models.CharField(max_length=4, choices=Rating)
    comment = models.TextField(blank=True, max_length=2000)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = FeedbackQuerySet.as_manager()

    class Meta:
        verbose_name_plural = "feedback"
        ordering = ["-updated_at"]

    def __str__(self) -> str:
        return f"{self.get_rating_display()} on {self.message_id}"
