from django.urls import path

from chat.views import pages

app_name = "chat"

urlpatterns = [
    path("", pages.home, name="home"),
    path("c/<uuid:pk>/", pages.conversation, name="conversation"),
    path("c/<uuid:pk>/messages", pages.message_create, name="message-create"),
    path("m/<uuid:pk>/", pages.message, name="message"),
]
