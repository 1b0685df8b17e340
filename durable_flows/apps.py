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
        if _tasks_backend_configured():
            # Task functions register as durable functions when their module is
            # imported: a worker imports the apps' ``tasks`` modules, as it does ``flows``.
            autodiscover_modules("tasks")


def _tasks_backend_configured() -> bool:
    from django.conf import settings

    backends = getattr(settings, "TASKS", None) or {}
    return any(
        isinstance(options, dict)
        and options.get("BACKEND") == "durable_flows.tasks.DurableFlowsBackend"
        for options in backends.values()
    )
