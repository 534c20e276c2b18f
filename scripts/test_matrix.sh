#!/usr/bin/env bash
# Runs the README's test command (scripts/test.sh) for each supported ROS 2 distro and Python
# in turn, each in its own venv (see scripts/venv.sh), then prints one line per combination.
# Exits non-zero if any combination failed, or if its Python was not found.
#
#   MATRIX  the combinations, distro:X.Y separated by spaces
#           (default "kilted:3.11 kilted:3.12 jazzy:3.11 jazzy:3.12")
#   Extra arguments go to pytest in every run. Logs: test_matrix_output/<distro>-py<X.Y>.log
set -uo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
matrix=${MATRIX:-kilted:3.11 kilted:3.12 jazzy:3.11 jazzy:3.12}
logs="$repo/test_matrix_output"
mkdir -p "$logs"

# Prints an interpreter of Python $1 (X.Y) that runs: pythonX.Y on PATH, else one of pyenv's.
find_python() {
  local candidate
  for candidate in "python$1" "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$1".*/bin/"python$1"; do
    if "$candidate" -c '' >/dev/null 2>&1; then
      command -v "$candidate"
      return 0
    fi
  done
  return 1
}

summaries=()
status=0
for combination in $matrix; do
  distro=${combination%%:*}
  version=${combination#*:}
  log="$logs/$distro-py$version.log"
  if ! python=$(find_python "$version"); then
    summaries+=("FAIL  $distro + Python $version: no python$version found (set up pyenv or PATH)")
    status=1
    continue
  fi
  echo "[matrix] $distro + Python $version ($python), log in ${log#"$repo"/}"
  started=$SECONDS
  ROS_DISTRO=$distro PYTHON=$python bash "$repo/scripts/test.sh" "$@" 2>&1 | tee "$log"
  code=${PIPESTATUS[0]}
  counts=$(grep -E '^=+ .*[0-9]+ (passed|failed|errors?|skipped).* in ' "$log" | tail -n 1 \
           | sed -E 's/^=+ //; s/ =+$//')
  verdict=PASS
  if [ "$code" != 0 ]; then verdict=FAIL; status=1; fi
  summaries+=("$verdict  $distro + Python $version: ${counts:-no pytest summary (exit code $code)}, $((SECONDS - started)) s")
done

echo "[matrix] summary"
printf '  %s\n' "${summaries[@]}"
exit "$status"
