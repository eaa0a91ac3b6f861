# Sourced by ci.sh and package.sh: checks Node and installs the pinned npm dependencies.
# npm ci runs only when package-lock.json or Node changed (stamp in node_modules/).
say() { echo "[deepfim/vscode] $*" >&2; }
trap 'say "FAILED at line $LINENO: $BASH_COMMAND"' ERR

command -v node >/dev/null || { say "node is not installed (Node >= 20 is needed)"; exit 1; }
node_major="$(node -p 'process.versions.node.split(".")[0]')"
[ "$node_major" -ge 20 ] || { say "Node >= 20 is needed, found $(node --version)"; exit 1; }

stamp="node_modules/.deepfim-stamp"
want="$(sha256sum < package-lock.json | cut -d' ' -f1) $(node --version)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  say "npm ci"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want" > "$stamp"
fi
