#!/usr/bin/env bash
# Runs the demo: sets up .venv (scripts/setup.sh), then a simulated robot whose client is
# killed mid-drive; prints the timeline and exits 0 only if the motor reached PWM 0.
# Extra arguments go to the demo (--window S, --runs N, --output DIR).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$repo/scripts/setup.sh"
cd "$repo"
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
exec "$repo/.venv/bin/python" -m viam_session.demo "$@"
