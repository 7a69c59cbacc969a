from django.urls import path

from chat.views import attachments, keys, pages, usage

app_name = "chat"

urlpatterns = [
    path("", pages.home, name="home"),
    path("sidebar/", pages.sidebar, name="sidebar"),
    path("c/<uuid:pk>/", pages.conversation, name="conversation"),
    path("c/<uuid:pk>/messages", pages.message_create, name="message-create"),
    path("c/<uuid:pk>/regenerate", pages.regenerate, name="regenerate"),
    path("c/<uuid:pk>/edit", pages.edit, name="edit"),
    path("c/<uuid:pk>/rename", pages.rename, name="rename"),
    path("c/<uuid:pk>/delete", pages.delete, name="delete"),
    path("c/<uuid:pk>/export.md", pages.export_conversation, {"fmt": "md"}, name="export-markdown"),
    path("c/<uuid:pk>/export.json", pages.export_conversation, {"fmt": "json"}, name="export-json"),
    path("m/<uuid:pk>/", pages.message, name="message"),
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
