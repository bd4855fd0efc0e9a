#!/usr/bin/env bash
# Property tests with fresh randomness and many more examples than the test command's
# repeatable run (see tests/conftest.py). Run by hand; pin what it finds with @example.
#   bash scripts/explore.sh [pytest args]      e.g. -k case_sentences
set -euo pipefail
cd "$(dirname "$0")/.."
export HYPOTHESIS_PROFILE=${HYPOTHESIS_PROFILE:-explore}
files=$(grep -l "@given" tests/*.py)
exec .venv/bin/python -m pytest -n 2 -q -p no:cacheprovider $files "$@"
