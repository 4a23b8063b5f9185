#!/usr/bin/env bash
# UDP OPTIONS flood against the release binary with SIPp: how many OPTIONS/s Tandem answers
# and how much CPU it spends per request. Usage: bench/options_flood.sh [rate] [count]
#   rate  : OPTIONS per second SIPp tries to send (default 20000)
#   count : total OPTIONS (default 200000)
# Prints one line of figures; BENCHMARKS.md records them with this command.
# The kernel caps socket buffers at net.core.rmem_max (often 208 KiB); bursts beyond that are
# counted as rcvbuf_errors (all sockets) and tandem_socket_drops (Tandem's socket only).
set -euo pipefail
cd "$(dirname "$0")/.."
rate=${1:-20000}
count=${2:-200000}
port=${PORT:-15060}

command -v sipp >/dev/null || { echo "sipp missing: apt-get install sip-tester" >&2; exit 1; }
cargo build --release --quiet --bin tandem

work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
cat > "$work/tandem.toml" <<TOML
data_dir = "$work/data"
[sip]
listen = ["udp:127.0.0.1:$port"]
[log]
format = "json"
TOML
RUST_LOG=warn target/release/tandem serve --config "$work/tandem.toml" >"$work/tandem.log" 2>&1 &
pid=$!
for _ in $(seq 100); do ss -uln | grep -q ":$port " && break; sleep 0.05; done

ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
rcvbuf() { awk '/^Udp:/ && ++n == 2 {print $6}' /proc/net/snmp; }
# Drops on Tandem's own socket (last column of /proc/net/udp, local port in hex).
tandem_drops() { awk -v p="$(printf ':%04X' "$port")" '$2 ~ p"$" {print $NF}' /proc/net/udp | head -n 1; }

cpu0=$(cpu); rcv0=$(rcvbuf); t0=$(date +%s.%N)
sipp 127.0.0.1:$port -sf tests/sipp/options.xml -t u1 -i 127.0.0.1 -p 0 -s +15550100 \
  -r "$rate" -m "$count" -l 2000 -buff_size 4194304 -nostdin -timeout 120s -trace_stat -stf "$work/stat.csv" \
  -fd 1 >/dev/null 2>"$work/sipp.err" || true
t1=$(date +%s.%N); cpu1=$(cpu); rcv1=$(rcvbuf); drops=$(tandem_drops)
rss_kib=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")

# SIPp's last statistics row: successful and failed calls, retransmissions.
last=$(tail -n 1 "$work/stat.csv")
header=$(head -n 1 "$work/stat.csv")
col() { echo "$header" | tr ';' '\n' | grep -nx "$1" | cut -d: -f1; }
ok=$(echo "$last" | cut -d';' -f"$(col SuccessfulCall\(C\))")
failed=$(echo "$last" | cut -d';' -f"$(col FailedCall\(C\))")
retrans=$(echo "$last" | cut -d';' -f"$(col Retransmissions\(C\))")
elapsed=$(echo "$t1 - $t0" | bc -l)
cpu_s=$(echo "($cpu1 - $cpu0) / $ticks" | bc -l)
printf 'offered=%s/s count=%s ok=%s failed=%s retrans=%s elapsed=%.2fs answered=%.0f/s tandem_cpu=%.2fs cpu_per_request=%.2fus rcvbuf_errors=%s tandem_socket_drops=%s peak_rss=%sKiB\n' \
  "$rate" "$count" "$ok" "$failed" "$retrans" "$elapsed" "$(echo "$ok / $elapsed" | bc -l)" \
  "$cpu_s" "$(echo "$cpu_s * 1000000 / $ok" | bc -l)" "$((rcv1 - rcv0))" "$drops" "$rss_kib"
