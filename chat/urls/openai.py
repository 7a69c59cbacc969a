from django.urls import path

from chat.views import openai_compat

app_name = "v1"

urlpatterns = [
    path("models", openai_compat.models, name="models"),
    path("chat/completions", openai_compat.chat_completions, name="chat-completions"),
]
