#!/usr/bin/env bash
# Set up the project and run the whole test suite (the README's test command; CI runs it).
# Browser tests need Debian's chromium: installed here when missing and we may use apt (root).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing chromium for the browser tests"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "could not install chromium: browser tests will skip (or fail under CI=true)"
fi
# shellcheck disable=SC1091
. .venv/bin/activate
set +e
python -m pytest "$@"
status=$?
set -e
if [ "$status" = 5 ]; then
  echo "pytest collected no tests" >&2
  exit 1
fi
exit "$status"
