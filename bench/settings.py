"""Settings for benchmarks: the example project plus the ``bench`` app's functions.

DATABASE_URL picks the database; quiet logging; default retry policy.
"""

from project.settings import *  # noqa: F403
from project.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "bench"]
DEBUG = False  # DEBUG keeps a log of every query: not what production measures
ALLOWED_HOSTS = ["*"]
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "loggers": {"durable_flows": {"level": "WARNING"}},
}
