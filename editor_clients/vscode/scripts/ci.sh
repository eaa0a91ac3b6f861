#!/usr/bin/env bash
# Build, lint, test and package the VS Code extension (called by scripts/test.sh).
# npm ci runs only when package-lock.json or Node changed (stamp in node_modules/).
# The tests start the real `deepfim lsp` from the checkout's .venv (DEEPFIM_BIN overrides).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
say() { echo "[deepfim/vscode] $*" >&2; }
trap 'say "FAILED at line $LINENO: $BASH_COMMAND"' ERR

command -v node >/dev/null || { say "node is not installed (Node >= 20 is needed)"; exit 1; }
node_major="$(node -p 'process.versions.node.split(".")[0]')"
[ "$node_major" -ge 20 ] || { say "Node >= 20 is needed, found $(node --version)"; exit 1; }

stamp="node_modules/.deepfim-stamp"
want="$(cat package-lock.json | sha256sum | cut -d' ' -f1) $(node --version)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  say "npm ci"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want" > "$stamp"
fi

say "tsc (strict)"
rm -rf out
npx --no-install tsc -p .
say "eslint"
npx --no-install eslint --max-warnings 0
say "tests (node --test)"
node --test --test-reporter=spec out/test/*.test.js
say "vsce package"
npx --no-install vsce package --allow-missing-repository --out deepfim.vsix >/dev/null
node -e 'const z = require("fs").readFileSync("deepfim.vsix"); process.exit(z.includes("extension/out/src/extension.js") ? 0 : 1)' \
  || { say "deepfim.vsix lacks extension/out/src/extension.js"; exit 1; }
say "ok: $(du -h deepfim.vsix | cut -f1) deepfim.vsix"
