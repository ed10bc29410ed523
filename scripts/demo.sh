#!/usr/bin/env bash
# One command from a fresh clone to the demo: install, train the demo model once (cached), serve it.
# Extra arguments go to launch.py (e.g. --port 8080 --open).
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1
python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
python -m pip install -q -e .
exec python launch.py "$@"
