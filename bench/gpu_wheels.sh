#!/usr/bin/env bash
# Fetches, here (where PyPI is reachable), the wheels of this project's dependencies that the GPU
# machine's image lacks (/work/.library/device/KINDS.md lists what it has), for bench/gpu_check.sh:
# the language server and context engine that `deepfim complete` imports. Into .whl/ (git-excluded),
# for the device run to carry; the versions are pyproject.toml's pins; CPython 3.12, x86-64.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
exclude="$(git rev-parse --git-path info/exclude)"
grep -qx '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >>"$exclude"
names='pygls|lsprotocol|cattrs|tree-sitter|tree-sitter-language-pack|watchfiles|ahocorasick-rs'
mapfile -t pins < <(grep -oE "\"($names)==[^\"]+\"" pyproject.toml | tr -d '"')
.venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl "${pins[@]}"
du -sh .whl
