#!/usr/bin/env bash
# Runs the whole test suite: sets up the venv (scripts/setup.sh), then pytest over test/.
# ROS_DISTRO (kilted, the default, or jazzy) and PYTHON (default python3) choose the venv, as
# for scripts/setup.sh. Extra arguments go to pytest (e.g. -k end_to_end, -x).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$repo/scripts/setup.sh"
# shellcheck source=venv.sh
source "$repo/scripts/venv.sh"
venv=$(venv_for "$(python_version_of "$python_bin")")
cd "$repo"
# The tests start their processes with sys.executable: the venv's Python, like everything else.
export VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH"
# DDS discovery stays on this machine (see README, "Tests").
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
# Fast DDS leaves the shared-memory files of a killed process in /dev/shm (the tests kill some
# on purpose); they pile up in RAM and slow discovery down. Its own tool removes those that no
# live process holds.
"$venv/bin/python" "$venv/tools/fastdds/fastdds.py" shm clean \
  | awk '/zombie/ {n += $1} END {printf "[%s] removed %d shared-memory zombie(s) of killed DDS processes\n", tag, n}' tag=test
echo "[test] running pytest on ROS 2 $ros_distro, $("$venv/bin/python" -V) ($(basename "$venv")): unit, lint and end-to-end tests"
exec "$venv/bin/python" -m pytest -v -p no:cacheprovider "$@"
