import asyncio
from typing import Any

from django.core.management.base import BaseCommand

from chat.sweeper import sweep


class Command(BaseCommand):
    help = "End the answers whose server process is gone, keeping their text."

    def handle(self, *args: Any, **options: Any) -> None:
        ended = asyncio.run(sweep())
        self.stdout.write(f"Ended {ended} interrupted answer(s).")
