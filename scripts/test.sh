#!/usr/bin/env bash
# Set up (scripts/setup.sh --test) and run the tests.
#   scripts/test.sh           unit + integration tests, then the browser tests
#   scripts/test.sh --slow    also the slow ones (long WebRTC sessions, training runs)
# Extra arguments after -- go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

markers="not slow and not gpu and not browser"
pytest_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --slow) markers="not gpu and not browser"; shift ;;
    --) shift; pytest_args=("$@"); break ;;
    *) echo "test.sh: unknown option $1" >&2; exit 2 ;;
  esac
done

scripts/setup.sh --test
export ROOMFUSE_DATA="${ROOMFUSE_DATA:-$PWD/../shared/data}"

echo "== tests: $markers"
.venv/bin/python -m pytest -m "$markers" "${pytest_args[@]}"

echo "== browser tests (headless Chromium, in a loopback-only network namespace)"
mkdir -p test-output  # pytest makes --basetemp itself, not its parent; screenshots land here
scripts/browser_test.sh --basetemp=test-output/browser "${pytest_args[@]}"
