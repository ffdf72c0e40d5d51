#!/usr/bin/env bash
# Set up roomfuse in ./.venv (idempotent: a second run only checks).
#   scripts/setup.sh            the package and its runtime dependencies
#   scripts/setup.sh --test     also the test tools, Chromium, Firefox and ffmpeg for browser tests
# Python 3.10-3.12. Torch is pinned and installed first: a bare `torch` requirement would
# pull the newest CUDA build (several GB) where the CPU build is what is wanted.
set -euo pipefail
cd "$(dirname "$0")/.."

TORCH_VERSION="${ROOMFUSE_TORCH:-2.13.0}"
PY="${PYTHON:-python3}"
extras=""
browser=0
for arg in "$@"; do
  case "$arg" in
    --test) extras="[test]"; browser=1 ;;
    *) echo "setup.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done

if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
stamp=".venv/.roomfuse-setup${extras}"
want="$(cat pyproject.toml | sha1sum | cut -c1-12) torch=$TORCH_VERSION"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "== installing torch $TORCH_VERSION, then roomfuse$extras (first time: a few minutes)"
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet "torch==$TORCH_VERSION"
  .venv/bin/python -m pip install --quiet -e ".$extras"
  echo "$want" > "$stamp"
fi

if [ "$browser" = 1 ] && { ! command -v chromium >/dev/null || ! command -v firefox-esr >/dev/null \
                          || ! command -v ffmpeg >/dev/null || ! command -v Xvfb >/dev/null \
                          || ! command -v ip >/dev/null; }; then
  echo "== installing Chromium, Firefox ESR, ffmpeg, Xvfb and iproute2 (browser and window tests)"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    chromium firefox-esr ffmpeg xvfb iproute2 >/dev/null
fi
echo "== roomfuse is set up: .venv/bin/roomfuse"
