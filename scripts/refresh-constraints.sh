#!/usr/bin/env bash
# Refresh constraints.txt, the pins every install of this project uses (scripts/setup.sh, CI, the
# README). It installs the project with the dev extra into a throwaway venv, unconstrained, and
# freezes what pip resolved. Commit the result on its own ("constraints: refresh"), after
# `./scripts/test.sh` passes with it, so that a new release elsewhere reaches CI only on purpose.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-python3}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$python" -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install --quiet --upgrade pip
# torch==2.13.0: the CPU build where a local wheel exists (see README); elsewhere the CUDA build.
"$tmp/venv/bin/python" -m pip install --quiet torch==2.13.0 -e "$root[dev]"
{
    echo "# Pins for every install of alarm (scripts/setup.sh, .ci/run, the README)."
    echo "# Written by scripts/refresh-constraints.sh on $(date -u +%Y-%m-%d) with $("$python" --version); do not edit by hand."
    echo "pip==$("$tmp/venv/bin/python" -m pip --version | cut -d' ' -f2)"
    "$tmp/venv/bin/python" -m pip freeze --exclude-editable | grep -v '^alarm[ =@]' | sed 's/+cpu$//'
} >"$root/constraints.txt"
echo "wrote $root/constraints.txt ($(grep -vc '^#' "$root/constraints.txt") pins)"
