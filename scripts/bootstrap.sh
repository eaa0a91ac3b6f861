#!/usr/bin/env bash
# Creates .venv in the checkout and installs DeepFIM into it, once.
# Usage: scripts/bootstrap.sh [base|dev]
# Reruns only when pyproject.toml changes (a stamp file in .venv records its hash).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
flavour="${1:-base}"
python="${PYTHON:-python3}"
stamp=".venv/.setup-stamp-$flavour"
want="$(cat pyproject.toml scripts/bootstrap.sh | sha256sum | cut -d' ' -f1)"
# a dev setup holds everything a base one does: `demo.sh` after `test.sh` installs nothing
for done in "$stamp" .venv/.setup-stamp-dev; do
  if [ -f "$done" ] && [ "$(cat "$done")" = "$want" ] && [ -x .venv/bin/deepfim ]; then
    exit 0
  fi
done
echo "[deepfim] setting up .venv ($flavour) ..." >&2
[ -x .venv/bin/python ] || "$python" -m venv .venv
log=.venv/setup.log  # pip's and the build backend's chatter; shown only when a step fails
: > "$log"
pip_install() {
  .venv/bin/python -m pip install -q --disable-pip-version-check "$@" >>"$log" 2>&1 && return 0
  echo "[deepfim] pip install $* failed; the end of $log:" >&2
  tail -n 40 "$log" >&2
  exit 1
}
pip_install --upgrade pip
# torch first: with torch already present, pip will not fetch a multi-GB CUDA build.
pip_install torch==2.13.0
if [ "$flavour" = dev ]; then
  pip_install -e ".[dev]"
else
  pip_install -e .
fi
echo "$want" > "$stamp"
echo "[deepfim] .venv ready" >&2
