#!/usr/bin/env bash
# The test command of README.md (and of CI): set-up, then the fast suite, then
# the slow checks (process kills and resumes, whole tools) and the real-data
# checks (they skip, saying why, when ../shared/data is absent).
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
ruff check .
python -m pytest -m "not realdata and not slow" "$@"
status=0
python -m pytest -m "slow or realdata" "$@" || status=$?
# pytest exits 5 when no test is collected (e.g. a -k filter): not a failure.
if [ "$status" -ne 0 ] && [ "$status" -ne 5 ]; then exit "$status"; fi
