from django.apps import AppConfig


class DurableFlowsConfig(AppConfig):
    name = "durable_flows"
    verbose_name = "Durable flows"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Start-up order: these need the app registry ready, which ready() is for.
        from django.utils.module_loading import autodiscover_modules

        from . import checks, logs  # noqa: F401 - importing checks registers them
        from .conf import flow_settings

        logs.install()  # event keys are masked in request logs
        flow_settings.check()  # unknown or malformed DURABLE_FLOWS keys fail at start-up
        autodiscover_modules("flows")
