from django.urls import path

from chat.views import attachments, feedback, keys, pages, shares, usage

app_name = "chat"

urlpatterns = [
    path("", pages.home, name="home"),
    path("sidebar/", pages.sidebar, name="sidebar"),
    path("c/<uuid:pk>/", pages.conversation, name="conversation"),
    path("c/<uuid:pk>/messages", pages.message_create, name="message-create"),
    path("c/<uuid:pk>/regenerate", pages.regenerate, name="regenerate"),
    path("c/<uuid:pk>/edit", pages.edit, name="edit"),
    path("c/<uuid:pk>/continue", pages.continue_answer, name="continue"),
    path("c/<uuid:pk>/switch", pages.switch, name="switch"),
    path("c/<uuid:pk>/rename", pages.rename, name="rename"),
    path("c/<uuid:pk>/delete", pages.delete, name="delete"),
    path("c/<uuid:pk>/export.md", pages.export_conversation, {"fmt": "md"}, name="export-markdown"),
    path("c/<uuid:pk>/export.json", pages.export_conversation, {"fmt": "json"}, name="export-json"),
    path("c/<uuid:pk>/shares/", shares.shares_page, name="shares"),
    path("shares/<uuid:pk>/revoke", shares.share_revoke, name="share-revoke"),
    path("m/<uuid:pk>/", pages.message, name="message"),
    path("m/<uuid:pk>/feedback", feedback.feedback_page, name="message-feedback"),
    path("attachments/<uuid:pk>/", attachments.attachment_file, name="attachment"),
    path(
        "attachments/<uuid:pk>/thumbnail",
        attachments.attachment_thumbnail,
        name="attachment-thumbnail",
    ),
    path(
        "s/<str:token>/attachments/<uuid:pk>/",
        attachments.shared_file,
        name="shared-attachment",
    ),
    path(
        "s/<str:token>/attachments/<uuid:pk>/thumbnail",
        attachments.shared_thumbnail,
        name="shared-attachment-thumbnail",
    ),
    path("usage/", usage.usage_page, name="usage"),
    path("keys/", keys.keys_page, name="keys"),
    path("keys/<uuid:pk>/revoke", keys.key_revoke, name="key-revoke"),
]
