"""The test settings as a project that configures no LOGGING."""

from tests.settings import *  # noqa: F403

LOGGING: dict = {}
