# Helpers the benchmark scripts share; sourced, not run.

# wait_ready URL TIMEOUT_SECONDS: waits until URL answers 2xx, or fails.
wait_ready() {
  local deadline=$((SECONDS + $2))
  until curl -fs "$1" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || { echo "not ready: $1" >&2; return 1; }
    sleep 0.05
  done
}

# ticks "PIDS": CPU time (user+system, clock ticks) of the processes in PIDS.
ticks() { local t=0 p; for p in $1; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo $t; }
