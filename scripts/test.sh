#!/usr/bin/env bash
# The whole test suite: lint, Python tests (engine, context, language server, Neovim plugin),
# and the VS Code extension's build, lint, tests and packaging. Sets up what it needs on first run.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/bootstrap.sh" dev
cd "$root"
echo "[deepfim] ruff" >&2
.venv/bin/ruff check .
if [ -x editor_clients/vscode/scripts/ci.sh ]; then
  echo "[deepfim] vscode extension" >&2
  editor_clients/vscode/scripts/ci.sh
fi
echo "[deepfim] pytest" >&2
exec .venv/bin/python -m pytest -q "$@"
