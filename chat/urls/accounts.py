from django.contrib.auth import views as auth_views
from django.urls import path

from chat.views import accounts

# No app_name: "login" and "logout" are the names Django's auth settings expect.
urlpatterns = [
    path("login/", accounts.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("signup/", accounts.signup, name="signup"),
]
