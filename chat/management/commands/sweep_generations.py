import asyncio
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from chat.sweeper import sweep


class Command(BaseCommand):
    help = "End the answers whose server process is gone, keeping their text."

    def handle(self, *args: Any, **options: Any) -> None:
        if settings.CHAT_EVENT_LOG == "memory":
            # The memory log lives in the server's process: from here every answer
            # would look orphaned. That server sweeps its own answers.
            raise CommandError("With CHAT_EVENT_LOG=memory only the server can sweep.")
        ended = asyncio.run(sweep())
        self.stdout.write(f"Ended {ended} interrupted answer(s).")
