"""The test settings plus ``reload_app``, an app a ``--reload`` test writes on the fly
(its directory is put on ``PYTHONPATH`` by the test)."""

from tests.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "reload_app"]  # noqa: F405
