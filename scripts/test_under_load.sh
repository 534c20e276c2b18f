#!/usr/bin/env bash
# Runs the whole test suite RUNS times in a row (default 3) while HOGS busy-looping processes
# (default 2, one per core of a 2-core machine) keep every core saturated: the suite must pass
# on a loaded machine, not only on an idle one. Prints one result line per run and a summary;
# each run's pytest output goes to bench_output/under_load/run<k>.log. Extra arguments go to
# pytest (e.g. -m 'not netns'). The hogs are stopped on exit, also on Ctrl-C.
set -uo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
runs=${RUNS:-3}
hogs=${HOGS:-2}
out="$repo/bench_output/under_load"
mkdir -p "$out"
bash "$repo/scripts/setup.sh" || exit 1

hog_pids=()
stop_hogs() {
  if [ "${#hog_pids[@]}" -gt 0 ]; then
    kill "${hog_pids[@]}" 2>/dev/null
    wait "${hog_pids[@]}" 2>/dev/null
  fi
  hog_pids=()
}
trap stop_hogs EXIT
trap 'exit 130' INT TERM

for _ in $(seq "$hogs"); do
  python3 -c 'while True: pass' &
  hog_pids+=($!)
done
echo "[under-load] $hogs CPU hog(s) running (pids ${hog_pids[*]}); $(nproc) core(s)"

failed_runs=0
summary=()
for k in $(seq "$runs"); do
  log="$out/run$k.log"
  echo "[under-load] run $k/$runs: full suite, output in ${log#"$repo"/} (load $(cut -d' ' -f1-3 /proc/loadavg))"
  start=$(date +%s)
  bash "$repo/scripts/test.sh" "$@" > "$log" 2>&1
  code=$?
  result=$(grep -E '^=+ .*(passed|failed|error).* in ' "$log" | tail -1 | tr -d '=' | xargs)
  line="run $k/$runs: exit $code in $(( $(date +%s) - start )) s: ${result:-no pytest summary}"
  echo "[under-load] $line"
  grep -E '^(FAILED|ERROR) ' "$log" | sed 's/^/[under-load]   /'
  summary+=("$line")
  [ "$code" -eq 0 ] || failed_runs=$((failed_runs + 1))
done
stop_hogs
echo "[under-load] summary ($hogs hog(s), $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores):"
printf '[under-load]   %s\n' "${summary[@]}"
[ "$failed_runs" -eq 0 ]
