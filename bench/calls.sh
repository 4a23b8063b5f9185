#!/usr/bin/env bash
# Calls through the whole flow (issue 5) against the release binary: a SIPp caller (the trunk)
# sends INVITEs to `tandem serve`, Tandem fetches its instructions from bench/webhook, which
# answers <Dial><Sip> to a SIPp callee, and each call is held CALL_MS and hung up by the caller.
#
# Usage: bench/calls.sh [--answer-on-bridge] [--capture S] [--profile S] [RATE] [SECONDS]
#        bench/calls.sh --ramp [--answer-on-bridge] [SECONDS]
#   RATE     calls per second offered by the caller (default 100)
#   SECONDS  how long they are offered (default 10)
#   --ramp   try each rate of RAMP_RATES in turn (SECONDS each, fresh processes per step) and
#            report the highest with 0 failed calls and < 1 % retransmissions; stops at the
#            first step that misses
#   --answer-on-bridge  the webhook answers <Dial answerOnBridge="true">: Tandem relays the
#            callee's 180 and answers the caller when the callee does (default: plain <Dial>,
#            which answers the caller as soon as the instructions run, so no 180)
#   --capture S  capture S seconds of SIP and webhook packets mid-run (tcpdump on lo) and
#            compute Tandem's own post-dial delay with bench/post_dial_delay.py
#   --profile S  `perf record -g` Tandem for S seconds mid-run, then print `perf report`'s top
#            entries (self time, >= 2 %)
# Environment: CALL_MS (call hold, default 1000), RAMP_RATES, SETTLE (seconds to wait after the
#   load before reading Tandem's gauges, which must be back to 0; default 40 for a single run,
#   past the 32 s transaction timers, and 0 for ramp steps), TANDEM_PORT (7060), UAS_PORT
#   (7070), UAC_PORT (7080), WEBHOOK_PORT (7090), HTTP_PORT (7088), RTP_PORTS (10000-59999;
#   SIPp's own media ports are UAS_PORT + 30 and UAC_PORT + 120, so two runs with other ports
#   can share the machine),
#   SLOWEST (with --capture: list that many of the slowest calls by arrival time),
#   CARGO_TARGET_DIR (where the release binaries are built; default target/), TANDEM_BIN (run
#   this tandem binary instead of the one built from the work tree: A/B comparisons), KEEP (set:
#   keep the temporary directory with every log, statistics file, capture and profile, and name
#   it).
#
# Each step prints one line of key=value figures: calls attempted/successful/failed,
# retransmissions, SIPp's response times INVITE→180 (rtd 1) and INVITE→200 (rtd 2) p50/p99,
# Tandem's CPU per successful call, peak RSS and open files, the CPU share of every process,
# RcvbufErrors (all sockets) and drops on Tandem's SIP socket, Tandem's warnings, and its call,
# transaction and dialog gauges after the load.
#
# Limits (checked, never changed silently): each call holds one RTP socket per leg in Tandem
# (caller and callee; both parties multiplex RTCP on it, RFC 5761) = 2 UDP sockets, so calls of
# CALL_MS at R/s hold ~2·R·CALL_MS/1000 descriptors. The script raises the soft limit to the hard one (`ulimit -Hn`; 20,000 in the
# project's container) and says when descriptors, not CPU, bound the rate.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

ramp=false
answer_on_bridge=false
capture=0
profile=0
positional=()
while [ $# -gt 0 ]; do
  case "$1" in
    --ramp) ramp=true ;;
    --answer-on-bridge) answer_on_bridge=true ;;
    --capture) capture=$2; shift ;;
    --profile) profile=$2; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "error: unknown option $1" >&2; exit 64 ;;
    *) positional+=("$1") ;;
  esac
  shift
done
if $ramp; then
  rate=0
  seconds=${positional[0]:-10}
else
  rate=${positional[0]:-100}
  seconds=${positional[1]:-10}
fi
call_ms=${CALL_MS:-1000}
tandem_port=${TANDEM_PORT:-7060}
uas_port=${UAS_PORT:-7070}
uac_port=${UAC_PORT:-7080}
webhook_port=${WEBHOOK_PORT:-7090}
http_port=${HTTP_PORT:-7088}
rtp_ports=${RTP_PORTS:-10000-59999}
ramp_rates=${RAMP_RATES:-"100 250 500 750 1000 1250 1500 2000 2500 3000 3500 4000 5000 6000"}
if $ramp; then settle=${SETTLE:-0}; else settle=${SETTLE:-40}; fi

command -v sipp >/dev/null || { echo "error: sipp missing: apt-get install sip-tester" >&2; exit 1; }
[ "$capture" = 0 ] || command -v tcpdump >/dev/null ||
  { echo "error: --capture needs tcpdump: apt-get install tcpdump" >&2; exit 1; }
[ "$profile" = 0 ] || command -v perf >/dev/null ||
  { echo "error: --profile needs perf: apt-get install linux-perf" >&2; exit 1; }

# Descriptors: raise the soft limit as far as the hard limit allows.
hard=$(ulimit -Hn)
if [ "$hard" = unlimited ]; then ulimit -n 1048576; else ulimit -n "$hard"; fi
fd_limit=$(ulimit -n)
echo "limits: ulimit -n $fd_limit (one call holds 2 RTP sockets in Tandem: ~$((fd_limit / 2)) calls" \
  "at once, ~$((fd_limit * 1000 / 2 / (call_ms + 100))) calls/s of ${call_ms} ms); rtp_ports=$rtp_ports;" \
  "rmem_max=$(cat /proc/sys/net/core/rmem_max); load:$(uptime | sed 's/.*load average//')"

[ -n "${TANDEM_BIN:-}" ] || cargo build --release --quiet -p tandem --bin tandem
cargo build --release --quiet -p webhook
target_dir=${CARGO_TARGET_DIR:-target}
case "$target_dir" in /*) ;; *) target_dir="$repo/$target_dir" ;; esac
tandem_bin=${TANDEM_BIN:-$target_dir/release/tandem}
[ -x "$tandem_bin" ] || { echo "error: no tandem binary at $tandem_bin" >&2; exit 64; }

work=$(mktemp -d)
pids=()
# shellcheck source=bench/lib.sh
. "$repo/bench/lib.sh"
cleanup() {
  stop_pids
  if [ -n "${KEEP:-}" ]; then echo "kept: $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ticks=$(getconf CLK_TCK)
machine_busy() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8, $2 + $3 + $4 + $5 + $6 + $7 + $8}' /proc/stat; }
rcvbuf_errors() { awk '/^Udp:/ && ++n == 2 {print $6}' /proc/net/snmp; }
# Drops on Tandem's SIP socket (last column of /proc/net/udp, local port in hex).
tandem_drops() { awk -v p="$(printf ':%04X' "$tandem_port")" '$2 ~ p"$" {print $NF}' /proc/net/udp | head -n 1; }
# Column of a SIPp statistics file by header name.
stat_column() {
  [ -s "$1" ] || { echo "-"; return; }
  local header
  header=$(head -n 1 "$1")
  local index
  index=$(echo "$header" | tr ';' '\n' | grep -nxF "$2" | cut -d: -f1)
  [ -n "$index" ] && tail -n 1 "$1" | cut -d';' -f"$index" || echo "-"
}
# p50/p99 in ms of one response-time timer from SIPp's -trace_rtt file (date;ms;rtd).
rtt_percentiles() {
  local values
  values=$(awk -F';' -v n="$2" 'NR > 1 && $3 == n {print $2}' "$1" | sort -g)
  local count
  count=$(echo "$values" | grep -c . || true)
  if [ "$count" -eq 0 ]; then echo "-/-"; return; fi
  local p50 p99
  p50=$(echo "$values" | sed -n "$(((count * 50 + 99) / 100))p")
  p99=$(echo "$values" | sed -n "$(((count * 99 + 99) / 100))p")
  printf '%.3f/%.3f' "$p50" "$p99"
}

# One step: fresh webhook, Tandem and callee; the caller offers $1 calls/s for $2 s.
# Sets: step_ok step_failed step_attempted step_retrans.
run_step() {
  local step_rate=$1 step_seconds=$2
  local dir="$work/step-$step_rate"
  mkdir -p "$dir/data"
  local needed=$((2 * step_rate * (call_ms + 100) / 1000 + 100))
  if [ "$needed" -gt "$fd_limit" ]; then
    echo "note: $step_rate calls/s of $call_ms ms hold ~$needed descriptors in Tandem, over the" \
      "limit of $fd_limit: descriptors, not CPU, bound this rate"
  fi
  local dial='<Dial>'
  $answer_on_bridge && dial='<Dial answerOnBridge="true">'
  local twiml="<Response>$dial<Sip>sip:uas@127.0.0.1:$uas_port</Sip></Dial></Response>"

  "$target_dir/release/webhook" --listen "127.0.0.1:$webhook_port" --twiml "$twiml" --timing \
    >"$dir/webhook.out" 2>"$dir/webhook.err" &
  local webhook_pid=$!
  pids+=("$webhook_pid")
  wait_http "http://127.0.0.1:$webhook_port/stats" || { cat "$dir/webhook.err" >&2; return 1; }

  local api_key="bench-$RANDOM$RANDOM"
  cat >"$dir/tandem.toml" <<TOML
data_dir = "$dir/data"
[sip]
listen = ["udp:127.0.0.1:$tandem_port"]
[http]
listen = "127.0.0.1:$http_port"
api_key = "$api_key"
[media]
rtp_ports = "$rtp_ports"
[[numbers]]
number = "*"
voice_url = "http://127.0.0.1:$webhook_port/voice"
[[trunks]]
name = "loopback"
allow = ["127.0.0.1/32"]
[log]
format = "json"
TOML
  RUST_LOG=warn "$tandem_bin" serve --config "$dir/tandem.toml" >"$dir/tandem.log" 2>&1 &
  local tandem_pid=$!
  pids+=("$tandem_pid")
  wait_http "http://127.0.0.1:$http_port/healthz" || { echo "error: tandem did not start" >&2; cat "$dir/tandem.log" >&2; return 1; }

  (cd "$dir" && exec sipp -sf "$repo/bench/sipp/uas.xml" -t u1 -i 127.0.0.1 -p "$uas_port" -mp $((uas_port + 30)) \
    -buff_size 8388608 -nostdin -trace_err -error_file "$dir/uas_errors.log" \
    -trace_stat -stf "$dir/uas_stat.csv" -fd 1 >/dev/null 2>"$dir/uas.err") &
  local uas_pid=$!
  pids+=("$uas_pid")
  wait_udp "$uas_port" || { echo "error: SIPp callee did not start" >&2; cat "$dir/uas.err" >&2; return 1; }

  local cpu0 busy0 rcv0 t0
  cpu0=$(cpu_ticks "$tandem_pid")
  read -r busy0 total0 < <(machine_busy)
  rcv0=$(rcvbuf_errors)
  t0=$(date +%s.%N)
  # SIPp's cap on calls in progress: far above the steady state, under its own descriptor limit.
  local call_limit=$((step_rate * 10 + 100))
  [ "$call_limit" -lt $((fd_limit - 100)) ] || call_limit=$((fd_limit - 100))
  (cd "$dir" && exec sipp "127.0.0.1:$tandem_port" -sf "$repo/bench/sipp/uac.xml" -t u1 -i 127.0.0.1 \
    -p "$uac_port" -mp $((uac_port + 120)) -s +15550100 -r "$step_rate" -m $((step_rate * step_seconds)) \
    -l "$call_limit" -d "$call_ms" -buff_size 8388608 -nostdin \
    -recv_timeout 40000 -timeout $((step_seconds + 60))s \
    -trace_stat -stf "$dir/uac_stat.csv" -fd 1 -trace_rtt -rtt_freq 100 \
    -trace_err -error_file "$dir/uac_errors.log" >/dev/null 2>"$dir/uac.err") &
  local uac_pid=$!
  pids+=("$uac_pid")

  # Sample Tandem's descriptors while the load runs; start the capture or profile a third in.
  local peak_fds=0 fds started=false capture_pid="" profile_pid="" now uac_cpu=0 sample
  while kill -0 "$uac_pid" 2>/dev/null; do
    sample=$(cpu_ticks "$uac_pid")
    [ "$sample" -gt 0 ] && uac_cpu=$sample
    fds=$(find "/proc/$tandem_pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
    [ "$fds" -gt "$peak_fds" ] && peak_fds=$fds
    now=$(date +%s.%N)
    if ! $started && [ "$(echo "$now - $t0 > $step_seconds / 3" | bc -l)" = 1 ]; then
      started=true
      if [ "$capture" != 0 ]; then
        tcpdump -i lo -n -s 1600 -B 32768 -w "$dir/capture.pcap" \
          "udp port $tandem_port or tcp port $webhook_port" 2>"$dir/tcpdump.err" &
        capture_pid=$!
        pids+=("$capture_pid")
        (sleep "$capture"; kill "$capture_pid" 2>/dev/null) &
        pids+=("$!")
      fi
      if [ "$profile" != 0 ]; then
        # shellcheck disable=SC2086 # PERF_RECORD holds several options.
        perf record ${PERF_RECORD:--g} -p "$tandem_pid" -o "$dir/perf.data" -- sleep "$profile" \
          >"$dir/perf.out" 2>&1 &
        profile_pid=$!
        pids+=("$profile_pid")
      fi
    fi
    sleep 0.5
  done
  wait "$uac_pid" 2>/dev/null || true
  local t1 cpu1 busy1 total1 rcv1 drops rss_kib
  t1=$(date +%s.%N)
  cpu1=$(cpu_ticks "$tandem_pid")
  read -r busy1 total1 < <(machine_busy)
  rcv1=$(rcvbuf_errors)
  drops=$(tandem_drops)
  rss_kib=$(awk '/^VmHWM/ {print $2}' "/proc/$tandem_pid/status")
  local uas_cpu webhook_cpu
  uas_cpu=$(cpu_ticks "$uas_pid")
  webhook_cpu=$(cpu_ticks "$webhook_pid")
  local webhook_stats
  webhook_stats=$(curl -fsS "http://127.0.0.1:$webhook_port/stats" || echo "requests=-")
  [ -n "$capture_pid" ] && { wait "$capture_pid" 2>/dev/null || true; }
  [ -n "$profile_pid" ] && { wait "$profile_pid" 2>/dev/null || true; }

  local stat="$dir/uac_stat.csv"
  step_attempted=$(stat_column "$stat" "OutgoingCall(C)")
  step_ok=$(stat_column "$stat" "SuccessfulCall(C)")
  step_failed=$(stat_column "$stat" "FailedCall(C)")
  step_retrans=$(stat_column "$stat" "Retransmissions(C)")
  local uas_retrans
  uas_retrans=$(stat_column "$dir/uas_stat.csv" "Retransmissions(C)")
  local rtt
  rtt=$(ls "$dir"/uac_*_rtt.csv 2>/dev/null | head -n 1 || true)
  local ring answer
  ring=$( [ -n "$rtt" ] && rtt_percentiles "$rtt" 1 || echo "-/-")
  answer=$( [ -n "$rtt" ] && rtt_percentiles "$rtt" 2 || echo "-/-")
  local elapsed cpu_s
  elapsed=$(echo "$t1 - $t0" | bc -l)
  cpu_s=$(echo "($cpu1 - $cpu0) / $ticks" | bc -l)
  local per_call="-"
  [ "${step_ok:-0}" != "-" ] && [ "${step_ok:-0}" -gt 0 ] && per_call=$(printf '%.3f' "$(echo "$cpu_s * 1000 / $step_ok" | bc -l)")
  local machine
  machine=$(echo "100 * ($busy1 - $busy0) / ($total1 - $total0)" | bc -l)
  local warnings
  warnings=$(grep -c '"level":"\(WARN\|ERROR\)"' "$dir/tandem.log" || true)

  local metrics="$dir/metrics"
  [ "$settle" -gt 0 ] && sleep "$settle"
  curl -fsS -H "Authorization: Bearer $api_key" "http://127.0.0.1:$http_port/metrics" >"$metrics" || : >"$metrics"
  local rss_after_kib
  rss_after_kib=$(awk '/^VmRSS/ {print $2}' "/proc/$tandem_pid/status")

  printf 'rate=%s seconds=%s attempted=%s ok=%s failed=%s retrans=%s callee_retrans=%s ring_ms_p50/p99=%s answer_ms_p50/p99=%s tandem_cpu_s=%.2f cpu_ms_per_call=%s tandem_cores=%.2f caller_cores=%.2f callee_cores=%.2f webhook_cores=%.2f machine_busy=%.0f%% peak_rss_kib=%s peak_fds=%s/%s rcvbuf_errors=%s tandem_socket_drops=%s tandem_warnings=%s webhook:%s after_%ss: rss_kib=%s calls_active=%s server_transactions=%s client_transactions=%s dialogs=%s rtp_pairs_leased=%s rtp_pairs_reused=%s\n' \
    "$step_rate" "$step_seconds" "$step_attempted" "$step_ok" "$step_failed" "$step_retrans" "$uas_retrans" \
    "$ring" "$answer" "$cpu_s" "$per_call" "$(echo "$cpu_s / $elapsed" | bc -l)" "$(echo "$uac_cpu / $ticks / $elapsed" | bc -l)" \
    "$(echo "$uas_cpu / $ticks / $elapsed" | bc -l)" "$(echo "$webhook_cpu / $ticks / $elapsed" | bc -l)" \
    "$machine" "$rss_kib" "$peak_fds" "$fd_limit" "$((rcv1 - rcv0))" "${drops:-0}" "$warnings" \
    "$(echo "$webhook_stats" | tr ' ' ',')" "$settle" "$rss_after_kib" \
    "$(gauge tandem_calls_active "$metrics")" "$(gauge tandem_sip_server_transactions "$metrics")" \
    "$(gauge tandem_sip_client_transactions "$metrics")" "$(gauge tandem_sip_dialogs "$metrics")" \
    "$(gauge tandem_media_rtp_port_pairs_leased "$metrics")" \
    "$(gauge tandem_media_rtp_port_pairs_reused_total "$metrics")"

  if [ "$peak_fds" -ge $((fd_limit * 9 / 10)) ]; then
    echo "descriptors: Tandem's open files peaked at $peak_fds of $fd_limit, so calls could not" \
      "bind RTP ports. If the step's own calls need that many (see the note before it)," \
      "descriptors bound the rate; otherwise calls piled up first (stall or CPU): see" \
      "SIPp's per-second uac_stat.csv (KEEP=1 keeps it)."
  fi
  if [ "$step_failed" != 0 ] || [ "$warnings" -gt 0 ]; then
    echo "--- why (first lines of SIPp's error logs and Tandem's warnings):"
    head -n 20 "$dir/uac_errors.log" 2>/dev/null | cut -c1-200 || true
    head -n 10 "$dir/uas_errors.log" 2>/dev/null | cut -c1-200 || true
    grep '"level":"\(WARN\|ERROR\)"' "$dir/tandem.log" |
      sed -E 's/"timestamp":"[^"]*",//; s/"call_sid":"CA[0-9a-f]+",?//g' |
      sort | uniq -c | sort -rn | head -n 10 | cut -c1-300 || true
    tail -n 5 "$dir/uac.err" 2>/dev/null || true
  fi
  if [ -n "$capture_pid" ]; then
    echo "--- post-dial delay from $capture s of capture ($(grep -h 'dropped by kernel' "$dir/tcpdump.err" || true)):"
    python3 "$repo/bench/post_dial_delay.py" "$dir/capture.pcap" --tandem-port "$tandem_port" \
      --uas-port "$uas_port" --webhook-port "$webhook_port" --slowest "${SLOWEST:-0}" || true
  fi
  if [ -n "$profile_pid" ]; then
    echo "--- perf report --no-children --percent-limit 2 (Tandem, $profile s):"
    perf report -i "$dir/perf.data" --no-children --percent-limit 2 --stdio -g none 2>/dev/null |
      grep -v '^#' | grep -v '^$' | head -n 40 || true
    echo "--- by shared object:"
    perf report -i "$dir/perf.data" --no-children --sort dso --stdio -g none 2>/dev/null |
      grep -v '^#' | grep -v '^$' | head -n 8 || true
  fi
  stop_pids
}

if ! $ramp; then
  run_step "$rate" "$seconds"
  exit 0
fi

best=0
for step in $ramp_rates; do
  run_step "$step" "$seconds"
  clean=false
  if [ "$step_failed" = 0 ] && [ "$step_ok" = "$step_attempted" ] && [ "$step_attempted" -gt 0 ] &&
    [ $((step_retrans * 100)) -lt "$step_attempted" ]; then
    clean=true
  fi
  if ! $clean; then
    echo "ramp: $step calls/s is not clean (failed=$step_failed retrans=$step_retrans of $step_attempted)"
    break
  fi
  best=$step
done
echo "ramp: highest clean rate: $best calls/s (0 failed, < 1 % retransmissions, ${seconds} s per step)"
