from django.apps import AppConfig


class DurableFlowsConfig(AppConfig):
    name = "durable_flows"
    verbose_name = "Durable flows"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.utils.module_loading import autodiscover_modules

        from . import checks  # noqa: F401 - registers the system checks
        from .conf import flow_settings

        flow_settings.check()  # unknown or malformed DURABLE_FLOWS keys fail at start-up
        autodiscover_modules("flows")
