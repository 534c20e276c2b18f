#!/usr/bin/env bash
# Runs the demo: sets up .venv (scripts/setup.sh), then a simulated robot whose client is
# killed mid-drive; prints the timeline and exits 0 only if the motor reached PWM 0.
# Extra arguments go to the demo (--window S, --runs N, --output DIR).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$repo/scripts/setup.sh"
cd "$repo"
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
# Fast DDS leaves the shared-memory files of a killed process in /dev/shm (the tests kill some
# on purpose); they pile up in RAM and slow discovery down. Its own tool removes those that no
# live process holds.
"$repo/.venv/bin/python" "$repo/.venv/tools/fastdds/fastdds.py" shm clean \
  | awk '/zombie/ {n += $1} END {printf "[%s] removed %d shared-memory zombie(s) of killed DDS processes\n", tag, n}' tag=demo
exec "$repo/.venv/bin/python" -m viam_session_harness.demo "$@"
