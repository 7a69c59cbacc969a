"""
Create the benchmark's users and their empty conversations in the bench database:

    python -m bench.dbsetup USERS CONVERSATIONS_PER_USER   (with the project's environment)

Prints `{"password": ..., "users": {"name": [conversation ids]}}`. Conversations are made
here in bulk because making them is not what is measured; messages go through the API.
"""

import json
import sys

import django

PASSWORD = "bench-password-1"


def main() -> None:
    users, per_user = int(sys.argv[1]), int(sys.argv[2])
    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password

    from chat.models import Conversation

    password = make_password(PASSWORD)  # hashed once: PBKDF2 is slow on purpose
    user_model = get_user_model()
    made = user_model.objects.bulk_create(
        user_model(username=f"bench{i}", password=password, is_staff=True) for i in range(users)
    )
    conversations = Conversation.objects.bulk_create(
        Conversation(owner=user, title="bench", auto_title=False, model=settings.CHAT_MODEL)
        for user in made
        for _ in range(per_user)
    )
    ids: dict[str, list[str]] = {user.username: [] for user in made}
    for conversation in conversations:
        ids[conversation.owner.username].append(str(conversation.pk))
    json.dump({"password": PASSWORD, "users": ids}, sys.stdout)


if __name__ == "__main__":
    main()
