#!/usr/bin/env bash
# Runs the demo: sets up the venv (scripts/setup.sh), then a simulated robot whose client is
# killed mid-drive; prints the timeline and exits 0 only if the motor reached PWM 0.
# ROS_DISTRO and PYTHON choose the venv, as for scripts/setup.sh.
# Extra arguments go to the demo (--window S, --runs N, --output DIR).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$repo/scripts/setup.sh"
# shellcheck source=venv.sh
source "$repo/scripts/venv.sh"
venv=$(venv_for "$(python_version_of "$python_bin")")
cd "$repo"
export VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH"
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
# Fast DDS leaves the shared-memory files of a killed process in /dev/shm (the tests kill some
# on purpose); they pile up in RAM and slow discovery down. Its own tool removes those that no
# live process holds.
"$venv/bin/python" "$venv/tools/fastdds/fastdds.py" shm clean \
  | awk '/zombie/ {n += $1} END {printf "[%s] removed %d shared-memory zombie(s) of killed DDS processes\n", tag, n}' tag=demo
exec "$venv/bin/python" -m viam_session_harness.demo "$@"
