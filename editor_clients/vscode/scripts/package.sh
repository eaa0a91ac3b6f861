#!/usr/bin/env bash
# Build the installable extension from a fresh clone, in one command:
#   editor_clients/vscode/scripts/package.sh      → editor_clients/vscode/deepfim.vsix
# Installs the pinned npm dependencies (Node >= 20 and the npm registry needed once), compiles
# with tsc and packages with the pinned @vscode/vsce. `--compiled` skips the compile (ci.sh).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
source scripts/npm-deps.sh

if [ "${1:-}" != "--compiled" ]; then
  say "tsc"
  rm -rf out
  npx --no-install tsc -p .
fi
say "vsce package"
npx --no-install vsce package --allow-missing-repository --out deepfim.vsix >/dev/null
node -e 'const z = require("fs").readFileSync("deepfim.vsix"); process.exit(z.includes("extension/out/src/extension.js") ? 0 : 1)' \
  || { say "deepfim.vsix lacks extension/out/src/extension.js"; exit 1; }
say "ok: $(du -h deepfim.vsix | cut -f1) $here/deepfim.vsix"
say "install it: code --install-extension $here/deepfim.vsix"
