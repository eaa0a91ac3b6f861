#!/usr/bin/env bash
# Build, lint, test and package the VS Code extension (called by scripts/test.sh).
# The tests start the real `deepfim lsp` from the checkout's .venv (DEEPFIM_BIN overrides).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
source scripts/npm-deps.sh

say "tsc (strict)"
rm -rf out
npx --no-install tsc -p .
say "eslint"
npx --no-install eslint --max-warnings 0
say "tests (node --test)"
node --test --test-reporter=spec out/test/*.test.js
scripts/package.sh --compiled
