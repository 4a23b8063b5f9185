#!/usr/bin/env bash
# Soak (issue 6): mixed calls through the whole flow against the release binary for a long
# time, then a check that Tandem returns to its baseline: calls, transactions, dialogs and RTP
# ports back to 0, memory and open files back near where they started.
#
# Usage: bench/soak.sh [RATE] [MINUTES]
#   RATE     calls per second offered in total (default 50), split
#              80 % answered: <Dial><Sip> to a SIPp callee that answers; the caller hangs up
#                   after CALL_MS (bench/sipp/uac.xml),
#              10 % no-answer: <Dial timeout="2"> to a callee that rings and never answers;
#                   Tandem cancels it and, with nothing after the dial, hangs up the caller
#                   (tests/sipp/calls/caller_receives_bye.xml),
#              10 % cancelled: <Dial answerOnBridge="true"> to the ringing callee; the caller
#                   cancels after the relayed 180 (tests/sipp/calls/cancel_ringing.xml).
#   MINUTES  how long (default 30)
# Environment: CALL_MS (default 1000), SAMPLE_S (default 60), PORT_BASE (default 8000: SIP on
#   +60, HTTP +88, callees +70/+71, callers +81..83, webhooks +91..93), CARGO_TARGET_DIR, KEEP
#   (keep and name the working directory with every log).
#
# Prints one line per sample (Tandem's RSS, open files, calls/transactions/dialogs/RTP pairs in
# use, CPU share) and a verdict: every SIPp call successful; RSS flat under steady load (the last
# sample within 25 % + 8 MiB of the first) and not growing after it; and after a settle period
# past the 32 s transaction timers, the gauges at 0 and open files back to the idle count (plus
# the webhook client's kept-alive connections, counted with ss).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

rate=${1:-50}
minutes=${2:-30}
call_ms=${CALL_MS:-1000}
sample_s=${SAMPLE_S:-60}
target_dir=${CARGO_TARGET_DIR:-$repo/target}
base=${PORT_BASE:-8000}
tandem_port=$((base + 60))
http_port=$((base + 88))
uas_port=$((base + 70))
ring_port=$((base + 71))
webhook_ports=($((base + 91)) $((base + 92)) $((base + 93)))
uac_ports=($((base + 81)) $((base + 82)) $((base + 83)))

command -v sipp >/dev/null || { echo "error: sipp missing: apt-get install sip-tester" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)"
cargo build --release --quiet -p tandem --bin tandem
cargo build --release --quiet -p webhook

work=$(mktemp -d /tmp/tandem-soak.XXXXXX)
pids=()
# shellcheck source=bench/lib.sh
. "$repo/bench/lib.sh"
cleanup() {
  stop_pids
  if [ -n "${KEEP:-}" ]; then echo "kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
open_files() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
metrics() { curl -fsS -H "Authorization: Bearer $api_key" "http://127.0.0.1:$http_port/metrics"; }
# Successful and failed calls of a SIPp statistics file (last line).
sipp_counts() {
  awk -F';' 'NR == 1 {for (i = 1; i <= NF; i++) col[$i] = i}
             END {print $col["SuccessfulCall(C)"], $col["FailedCall(C)"]}' "$1"
}

# Three applications, one webhook each.
dial_answered="<Response><Dial><Sip>sip:uas@127.0.0.1:$uas_port</Sip></Dial></Response>"
dial_no_answer="<Response><Dial timeout=\"2\"><Sip>sip:ring@127.0.0.1:$ring_port</Sip></Dial></Response>"
dial_cancelled="<Response><Dial answerOnBridge=\"true\" timeout=\"20\"><Sip>sip:ring@127.0.0.1:$ring_port</Sip></Dial></Response>"
twimls=("$dial_answered" "$dial_no_answer" "$dial_cancelled")
for index in 0 1 2; do
  "$target_dir/release/webhook" --listen "127.0.0.1:${webhook_ports[index]}" --twiml "${twimls[index]}" \
    >"$work/webhook$index.out" 2>&1 &
  pids+=($!)
  wait_http "http://127.0.0.1:${webhook_ports[index]}/stats"
done

api_key="soak-$RANDOM$RANDOM"
mkdir -p "$work/data"
cat >"$work/tandem.toml" <<TOML
data_dir = "$work/data"
[sip]
listen = ["udp:127.0.0.1:$tandem_port"]
[http]
listen = "127.0.0.1:$http_port"
api_key = "$api_key"
[media]
rtp_ports = "$((base * 4))-$((base * 4 + 9999))"
[[numbers]]
number = "+1000"
voice_url = "http://127.0.0.1:${webhook_ports[0]}/voice"
[[numbers]]
number = "+2000"
voice_url = "http://127.0.0.1:${webhook_ports[1]}/voice"
[[numbers]]
number = "+3000"
voice_url = "http://127.0.0.1:${webhook_ports[2]}/voice"
[[trunks]]
name = "loopback"
allow = ["127.0.0.1/32"]
TOML
RUST_LOG=warn "$target_dir/release/tandem" serve --config "$work/tandem.toml" >"$work/tandem.log" 2>&1 &
tandem_pid=$!
pids+=("$tandem_pid")
wait_http "http://127.0.0.1:$http_port/healthz"

# The callees: one answers every call, one rings until cancelled.
(cd "$work" && exec sipp -sf "$repo/bench/sipp/uas.xml" -t u1 -i 127.0.0.1 -p "$uas_port" -mp $((base - 700)) \
  -buff_size 8388608 -nostdin -trace_stat -stf "$work/uas.csv" -fd 10 >/dev/null 2>"$work/uas.err") &
pids+=($!)
(cd "$work" && exec sipp -sf "$repo/tests/sipp/calls/uas_ring_cancelled.xml" -t u1 -i 127.0.0.1 \
  -p "$ring_port" -mp $((base - 600)) -buff_size 8388608 -nostdin -trace_stat -stf "$work/ring.csv" -fd 10 \
  >/dev/null 2>"$work/ring.err") &
pids+=($!)
wait_udp "$uas_port"
wait_udp "$ring_port"

idle_files=$(open_files "$tandem_pid")
seconds=$((minutes * 60))
# Integer rates for SIPp: 10 % each for no-answer and cancelled (at least 1/s), the rest answered.
tenth=$(((rate + 5) / 10))
[ "$tenth" -ge 1 ] || tenth=1
rates=($((rate - 2 * tenth)) "$tenth" "$tenth")
numbers=("+1000" "+2000" "+3000")
scenarios=("$repo/bench/sipp/uac.xml" "$repo/tests/sipp/calls/caller_receives_bye.xml" \
  "$repo/tests/sipp/calls/cancel_ringing.xml")
names=(answered no-answer cancelled)
uac_pids=()
for index in 0 1 2; do
  calls=$((rates[index] * seconds))
  (cd "$work" && exec sipp "127.0.0.1:$tandem_port" -sf "${scenarios[index]}" -t u1 -i 127.0.0.1 \
    -p "${uac_ports[index]}" -mp $((base - 500 + index * 100)) -s "${numbers[index]}" \
    -r "${rates[index]}" -m "$calls" -d "$call_ms" -buff_size 8388608 -nostdin \
    -recv_timeout 40000 -timeout $((seconds + 120))s \
    -trace_stat -stf "$work/uac-${names[index]}.csv" -fd 10 \
    -trace_err -error_file "$work/uac-${names[index]}-errors.log" >/dev/null 2>"$work/uac$index.err") &
  uac_pids+=($!)
  pids+=($!)
done

echo "soak: $rate calls/s (80 % answered, 10 % no-answer, 10 % cancelled) for $minutes min;" \
  "idle open files $idle_files; sampling every ${sample_s}s"
printf '%8s %10s %6s %6s %8s %8s %8s %6s %6s\n' elapsed rss_kib files calls srv_tx cli_tx dialogs rtp cpu%
started=$(date +%s)
first_rss=""
last_ticks=$(cpu_ticks "$tandem_pid")
hz=$(getconf CLK_TCK)
sample() {
  local m
  m=$(metrics)
  local rss
  rss=$(rss_kib "$tandem_pid")
  [ -n "$first_rss" ] || first_rss=$rss
  local ticks
  ticks=$(cpu_ticks "$tandem_pid")
  local cpu
  cpu=$(awk -v t="$((ticks - last_ticks))" -v hz="$hz" -v s="$sample_s" 'BEGIN {print t * 100 / hz / s}')
  last_ticks=$ticks
  printf '%8s %10s %6s %6s %8s %8s %8s %6s %6.1f\n' "$(($(date +%s) - started))s" "$rss" \
    "$(open_files "$tandem_pid")" "$(echo "$m" | gauge tandem_calls_active)" \
    "$(echo "$m" | gauge tandem_sip_server_transactions)" \
    "$(echo "$m" | gauge tandem_sip_client_transactions)" "$(echo "$m" | gauge tandem_sip_dialogs)" \
    "$(echo "$m" | gauge tandem_media_rtp_port_pairs_leased)" "$cpu"
}
while :; do
  running=false
  for pid in "${uac_pids[@]}"; do kill -0 "$pid" 2>/dev/null && running=true; done
  $running || break
  sleep "$sample_s"
  sample
  load_rss=$(rss_kib "$tandem_pid")
done

# Settle past Timer D/H/J (32 s), then look again.
sleep 40
echo "after settling 40 s:"
sample
m=$(metrics)
end_rss=$(rss_kib "$tandem_pid")
end_files=$(open_files "$tandem_pid")
verdict=ok
for index in 0 1 2; do
  read -r ok failed < <(sipp_counts "$work/uac-${names[index]}.csv")
  echo "${names[index]}: successful=$ok failed=$failed"
  [ "$failed" -eq 0 ] || verdict=FAIL
done
for name in tandem_calls_active tandem_sip_server_transactions tandem_sip_client_transactions \
  tandem_sip_dialogs tandem_media_rtp_port_pairs_leased; do
  value=$(echo "$m" | gauge "$name")
  [ "$value" -eq 0 ] || { echo "not back to 0: $name=$value"; verdict=FAIL; }
done
# Memory must plateau under steady load: the last sample under load within 25 % (+8 MiB) of the
# first (taken after one sample period of warm-up), and nothing more after the load.
limit=$((first_rss * 5 / 4 + 8192))
[ "$load_rss" -le "$limit" ] || { echo "RSS grew under load: $first_rss -> $load_rss KiB"; verdict=FAIL; }
[ "$end_rss" -le $((load_rss + 8192)) ] || { echo "RSS grew after the load: $load_rss -> $end_rss KiB"; verdict=FAIL; }
# Back to the idle descriptors, not counting the webhook client's kept-alive connections: its
# pool keeps idle ones for 90 s, past this settle period (seen: 20 connections 30 s after a load
# of 1,000 calls/s, 4 after 40 s). Any other descriptor left is a leak.
kept_alive=$(ss -tnpH state established \
  "( dport = :${webhook_ports[0]} or dport = :${webhook_ports[1]} or dport = :${webhook_ports[2]} )" \
  2>/dev/null | grep -c "pid=$tandem_pid," || true)
[ "$end_files" -le $((idle_files + kept_alive)) ] ||
  { echo "open files: idle $idle_files, now $end_files ($kept_alive kept-alive webhook connections)"; verdict=FAIL; }
echo "$m" | grep -E '^tandem_calls_total' || true
warnings=$(grep -c '"level":"WARN"\|WARN' "$work/tandem.log" || true)
echo "tandem warnings: $warnings (first: $(grep -m1 'WARN' "$work/tandem.log" | cut -c1-200))"
echo "verdict: $verdict (RSS first sample $first_rss KiB, end $end_rss KiB; open files idle $idle_files, end $end_files of which $kept_alive kept-alive webhook connections)"
[ "$verdict" = ok ]
