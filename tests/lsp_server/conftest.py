"""Fixtures of the language-server tests live in lsp_support.py (`conftest` module names collide across folders)."""

from lsp_support import *  # noqa: F401,F403
