"""Fixtures of the serving tests live in serving_support.py (`conftest` module names collide across folders)."""

from serving_support import *  # noqa: F401,F403
