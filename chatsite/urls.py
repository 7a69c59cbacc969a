from django.contrib import admin
from django.urls import include, path

from chat.views import health, shares

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("admin/", admin.site.urls),
    # A share link's public page: no login; "shared" is ShareLink.get_absolute_url's name.
    path("s/<str:token>/", shares.shared, name="shared"),
    path("accounts/", include("chat.urls.accounts")),
    path("api/", include("chat.urls.api")),
    path("v1/", include("chat.urls.openai")),
    path("", include("chat.urls.pages")),
]

handler400 = "chat.views.errors.bad_request"
handler404 = "chat.views.errors.not_found"
handler500 = "chat.views.errors.server_error"
