from django.urls import path

from chat.views import api, attachments, completions, feedback, keys, shares, stream, ui_chat

app_name = "api"

urlpatterns = [
    path("conversations/", api.conversations, name="conversations"),
    path("conversations/<uuid:pk>/", api.conversation, name="conversation"),
    path("conversations/<uuid:pk>/messages/", api.messages, name="messages"),
    path("conversations/<uuid:pk>/regenerate", api.regenerate, name="regenerate"),
    path("conversations/<uuid:pk>/continue", api.continue_answer, name="continue"),
    path("conversations/<uuid:pk>/switch", api.switch, name="switch"),
    path("conversations/<uuid:pk>/shares/", shares.conversation_shares, name="shares"),
    path("shares/<uuid:pk>/", shares.share, name="share"),
    path("messages/<uuid:pk>/feedback", feedback.message_feedback, name="message-feedback"),
    path("generations/<uuid:pk>/stream", stream.generation_stream, name="generation-stream"),
    path("generations/<uuid:pk>/cancel", api.generation_cancel, name="generation-cancel"),
    path("completions", completions.completion, name="completions"),
    path("chat/completions", completions.chat_completion, name="chat-completions"),
    path("attachments/", attachments.upload, name="attachments"),
    path("attachments/<uuid:pk>/", attachments.attachment, name="attachment"),
    path("keys/", keys.keys, name="keys"),
    path("keys/<uuid:pk>/", keys.key, name="key"),
    path("ui/chat", ui_chat.chat, name="ui-chat"),
    path("ui/chat/<str:chat_id>/stream", ui_chat.resume, name="ui-chat-stream"),
    path("ui/chat/<str:chat_id>/stop", ui_chat.stop, name="ui-chat-stop"),
    path("ui/chat/<str:chat_id>/messages", ui_chat.messages, name="ui-chat-messages"),
]
