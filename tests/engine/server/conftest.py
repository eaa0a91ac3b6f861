"""Fixtures of the team-server tests live in team_support.py (`conftest` module names collide across folders)."""

from team_support import *  # noqa: F401,F403
