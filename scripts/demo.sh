#!/usr/bin/env bash
# The main job: complete code in the bundled example workspace with the embedded model.
# Sets up .venv on first run. Extra arguments are passed to `deepfim complete`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/bootstrap.sh" base
cd "$root"
exec .venv/bin/deepfim complete examples/shop/shop/cart.py:23:1 --workspace examples/shop "$@"
