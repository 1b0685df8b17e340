from django.core.management.base import BaseCommand, CommandError

from durable_flows.keys import KeyNameTaken, create_key


class Command(BaseCommand):
    help = "Create an event key for POST api/events/ and Inngest's Event API; prints it once."

    def add_arguments(self, parser):
        parser.add_argument("name", help="What the key is for, e.g. 'billing-service'")

    def handle(self, *args, **options):
        name = options["name"].strip()
        if not name or len(name) > 100:
            raise CommandError("NAME must be 1-100 characters")
        try:
            key, raw = create_key(name)
        except KeyNameTaken as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"Created event key {key.name!r} (prefix {key.prefix}). "
            "Store it now: only its hash is kept, it cannot be shown again."
        )
        self.stdout.write(raw)
