#!/usr/bin/env bash
# Runs the whole test suite: sets up .venv (scripts/setup.sh), then pytest over test/.
# Extra arguments go to pytest (e.g. -k end_to_end, -x).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$repo/scripts/setup.sh"
cd "$repo"
# DDS discovery stays on this machine (see README, "Tests").
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
# Fast DDS leaves the shared-memory files of a killed process in /dev/shm (the tests kill some
# on purpose); they pile up in RAM and slow discovery down. Its own tool removes those that no
# live process holds.
"$repo/.venv/bin/python" "$repo/.venv/tools/fastdds/fastdds.py" shm clean \
  | awk '/zombie/ {n += $1} END {printf "[%s] removed %d shared-memory zombie(s) of killed DDS processes\n", tag, n}' tag=test
echo "[test] running pytest (unit, lint and end-to-end tests; under a minute)"
exec "$repo/.venv/bin/python" -m pytest -v -p no:cacheprovider "$@"
