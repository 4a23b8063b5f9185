#!/usr/bin/env bash
# Idle WebSocket load against the release binary: N authenticated, registered connections to the
# gateway (GET /v1/ws) on 127.0.0.1, opened with bench/ws-load. Usage: bench/ws_load.sh [N] [C]
#   N : connections (default 50000)
#   C : connections being set up at once (default 128)
# Environment: HOLD (seconds held idle once all are ready, default 45: past the gateway's
#   dead_after of 30 s, so connections survive only by answering its pings),
#   PORT (HTTP listener, default 18080), SIP_PORT (default 15070).
# Prints the load generator's lines and one line of figures: setup rate (connect + listen +
# register per second, client included), failures, Tandem's RSS growth per connection, Tandem's
# CPU seconds during setup, and tandem_presence_devices_online during the hold (should be N).
#
# Limits that bound N (checked here, never changed silently):
# - Open files: Tandem needs one descriptor per connection, and so does the load generator. The
#   script raises `ulimit -n` to N + 100; without CAP_SYS_RESOURCE the hard limit caps it (a
#   container's hard limit of 20000 caps N at 19,900), and the script says so and stops.
#   fs.file-max (system-wide) must exceed 2 × N.
# - Source ports: connections come from 127.0.1.1, 127.0.1.2, ... (N / 80 addresses, under the
#   gateway's 100 per address), each binding ports from 20000 upwards, below
#   net.ipv4.ip_local_port_range, so the ephemeral range (28k ports by default) does not bound N.
# - Accept queue: Tandem's HTTP listener asks for a backlog of 4096 (`ss -ltn`: Send-Q), capped
#   by net.core.somaxconn. If C exceeds it the queue overflows and those clients resend their SYN
#   after 1 s, which shows as listen_overflows / syn_retransmits and a p99 latency of ~1 s.
set -euo pipefail
cd "$(dirname "$0")/.."
connections=${1:-50000}
concurrency=${2:-128}
hold=${HOLD:-45}
port=${PORT:-18080}
sip_port=${SIP_PORT:-15070}

needed=$((connections + 100))
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt "$needed" ]; then
  ulimit -Hn "$needed" 2>/dev/null || {
    echo "error: $connections connections need ~$needed open files per process (Tandem and the" \
      "load generator), but the hard limit is $hard and cannot be raised here (no" \
      "CAP_SYS_RESOURCE). Largest N this shell allows: about $((hard - 100))." >&2
    exit 1
  }
fi
ulimit -n "$needed" || { echo "error: cannot raise ulimit -n to $needed" >&2; exit 1; }
file_max=$(cat /proc/sys/fs/file-max)
if [ "$file_max" -lt $((2 * connections + 4096)) ]; then
  echo "error: fs.file-max=$file_max is below 2 × $connections + 4096" >&2
  exit 1
fi
echo "limits: ulimit -n $(ulimit -n); somaxconn=$(cat /proc/sys/net/core/somaxconn);" \
  "ip_local_port_range=$(tr '\t' '-' </proc/sys/net/ipv4/ip_local_port_range);" \
  "file-max=$file_max; uptime:$(uptime)"

cargo build --release --quiet -p tandem --bin tandem
cargo build --release --quiet -p ws-load
target_dir=${CARGO_TARGET_DIR:-target}

work=$(mktemp -d)
pid=""
load_pid=""
cleanup() {
  [ -n "$load_pid" ] && kill "$load_pid" 2>/dev/null || true
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  [ -n "$pid" ] && wait "$pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
cat >"$work/tandem.toml" <<TOML
data_dir = "$work/data"
[sip]
listen = ["udp:127.0.0.1:$sip_port"]
[http]
listen = "127.0.0.1:$port"
[log]
format = "json"
TOML
RUST_LOG=warn "$target_dir/release/tandem" serve --config "$work/tandem.toml" >"$work/tandem.log" 2>&1 &
pid=$!
for _ in $(seq 200); do
  curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  sleep 0.05
done
curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null || {
  echo "error: tandem did not become healthy" >&2
  cat "$work/tandem.log" >&2
  exit 1
}

ticks=$(getconf CLK_TCK)
rss() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# Kernel TCP counters (absolute): accept-queue overflows and SYN retransmissions.
tcp_counter() { nstat -az "$1" 2>/dev/null | awk -v n="$1" '$1 == n {print $2}'; }
online() { curl -fsS "http://127.0.0.1:$port/metrics" | awk '/^tandem_presence_devices_online / {print $2}'; }

overflows0=$(tcp_counter TcpExtListenOverflows)
syn_retrans0=$(tcp_counter TcpExtTCPSynRetrans)
rss0=$(rss "$pid")
cpu0=$(cpu "$pid")
"$target_dir/release/ws-load" --url "ws://127.0.0.1:$port/v1/ws" --connections "$connections" \
  --concurrency "$concurrency" --hold "$hold" --key-file "$work/data/signing_key" \
  >"$work/load.out" 2>"$work/load.err" &
load_pid=$!
until grep -qs '^registered ' "$work/load.out"; do
  kill -0 "$load_pid" 2>/dev/null || { cat "$work/load.err" >&2; exit 1; }
  sleep 0.05
done
cpu1=$(cpu "$pid")
rss1=$(rss "$pid")
load_cpu1=$(cpu "$load_pid")
overflows1=$(tcp_counter TcpExtListenOverflows)
syn_retrans1=$(tcp_counter TcpExtTCPSynRetrans)
cat "$work/load.out"
# Sample near the end of the hold: with HOLD over 30 s, past the gateway's dead_after (30 s), so
# devices_online_hold = N shows that the clients answered its pings (every 10 s).
sleep $((hold > 10 ? hold - 5 : hold / 2))
rss2=$(rss "$pid")
online2=$(online)
wait "$load_pid"
load_pid=""
tail -n 1 "$work/load.out"
sleep 1
rss3=$(rss "$pid")
online3=$(online)

ready=$(sed -n 's/^registered .*ready=\([0-9]*\).*/\1/p' "$work/load.out")
[ "$ready" -gt 0 ] || { echo "error: no connection became ready" >&2; exit 1; }
printf 'connections=%s ready=%s tandem_rss_kib: before=%s registered=%s hold=%s after_close=%s per_connection_kib=%.2f (registered) %.2f (hold) tandem_cpu_setup_s=%.2f load_generator_cpu_setup_s=%.2f devices_online_hold=%s devices_online_after=%s listen_overflows=%s syn_retransmits=%s\n' \
  "$connections" "$ready" "$rss0" "$rss1" "$rss2" "$rss3" \
  "$(echo "($rss1 - $rss0) / $ready" | bc -l)" "$(echo "($rss2 - $rss0) / $ready" | bc -l)" \
  "$(echo "($cpu1 - $cpu0) / $ticks" | bc -l)" "$(echo "$load_cpu1 / $ticks" | bc -l)" \
  "$online2" "$online3" "$((overflows1 - overflows0))" "$((syn_retrans1 - syn_retrans0))"
