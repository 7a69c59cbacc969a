from typing import Any

from django.core.management.base import BaseCommand

from chat.attachments import sweep_unsent


class Command(BaseCommand):
    help = "Delete uploaded attachments that were not sent with a message within a day."

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(f"Deleted {sweep_unsent()} unsent attachment(s).")
