# Shared by bench/calls.sh and bench/soak.sh (sourced, not run): waiting for the processes a
# benchmark starts, stopping them by PID, and reading their figures.

# Waits up to 5 s until something listens on UDP 127.0.0.1:PORT.
wait_udp() { for _ in $(seq 100); do ss -uln | grep -q "127.0.0.1:$1 " && return 0; sleep 0.05; done; return 1; }
# Waits up to 10 s until URL answers 2xx.
wait_http() { for _ in $(seq 200); do curl -fsS "$1" >/dev/null 2>&1 && return 0; sleep 0.05; done; return 1; }
# CPU time (utime + stime, clock ticks) of PID; 0 once it is gone.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
# The value of Prometheus gauge NAME (summed over its labels) in FILE, or standard input.
gauge() { awk -v n="$1" '$1 == n {s += $2} END {print s + 0}' "${2:--}"; }
# Stops the processes in the array `pids`, newest first, each by its PID, and empties it.
stop_pids() {
  local index
  for ((index = ${#pids[@]} - 1; index >= 0; index--)); do
    kill "${pids[index]}" 2>/dev/null || true
    wait "${pids[index]}" 2>/dev/null || true
  done
  pids=()
}
