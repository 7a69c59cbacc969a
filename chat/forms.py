"""The composer's forms: the same rules as the JSON API, for the pages."""

from typing import Any

from django import forms
from django.conf import settings
from django.contrib.auth.forms import UserCreationForm
from django.contrib.auth.models import User
from django.core.validators import MaxLengthValidator

from chat.demo import DEMO_MODEL

DEMO_LABEL = "Offline demo model"


def model_label(name: str) -> str:
    """Return how a model is shown: its configured label, or its name."""
    if name == DEMO_MODEL:
        return DEMO_LABEL
    endpoint = settings.CHAT_MODEL_ENDPOINTS.get(name) or {}
    return endpoint.get("label") or name


def _model_choices() -> list[tuple[str, str]]:
    return [(model, model_label(model)) for model in settings.CHAT_MODELS]


class MessageForm(forms.Form):
    # strip=False: the message is stored as typed; blank-only is refused in clean_content.
    content = forms.CharField(
        strip=False,
        widget=forms.Textarea(attrs={"rows": 1, "placeholder": "Message…"}),
        error_messages={"required": "Write a message first."},
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Read at request time, not import time, so that the setting can change.
        field = self.fields["content"]
        assert isinstance(field, forms.CharField)
        limit = settings.CHAT_MAX_MESSAGE_CHARS
        field.validators.append(
            MaxLengthValidator(
                limit, message=f"This message is too long: at most {limit:,} characters, please."
            )
        )

    def clean_content(self) -> str:
        content: str = self.cleaned_data["content"]
        if not content.strip():
            raise forms.ValidationError("Write a message first.", code="required")
        return content


class NewConversationForm(MessageForm):
    """The first message of a new conversation, the model to answer it, and its instructions."""

    model = forms.ChoiceField(choices=_model_choices, required=False)
    system_prompt = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        label="System prompt",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["model"].initial = settings.CHAT_MODEL
        limit = settings.CHAT_MAX_MESSAGE_CHARS
        self.fields["system_prompt"].validators.append(
            MaxLengthValidator(
                limit, message=f"The system prompt is too long: at most {limit:,} characters."
            )
        )

    def clean_model(self) -> str:
        return self.cleaned_data["model"] or settings.CHAT_MODEL


class RenameForm(forms.Form):
    title = forms.CharField(
        max_length=200,
        error_messages={"required": "A title cannot be empty."},
    )


class SignupForm(UserCreationForm[User]):
    """Django's own sign-up form: a username and a password checked by the validators."""
