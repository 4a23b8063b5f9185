#!/usr/bin/env bash
# Paired A/B of two tandem binaries through the whole flow: each round runs bench/calls.sh for
# binary A and binary B *at the same time*, each with its own SIPp pair, webhook, ports and RTP
# range, so both see the same machine noise (this VM drifts ±10-15 % minute to minute, which
# swamps a 5 % change measured in sequential runs). The two port sets swap every round.
#
# Usage: bench/pair.sh RATE SECONDS ROUNDS BINARY_A BINARY_B
#   RATE     calls per second offered to *each* binary (the machine carries twice that)
#   SECONDS  how long each round offers them
#   ROUNDS   rounds (even numbers give each binary each port set equally often)
# Environment: CARGO_TARGET_DIR (where bench/calls.sh builds bench/webhook).
#
# Prints per round: failed calls, CPU per call and peak RSS of each, and B/A of the CPU per
# call. Compare the ratios, not the absolute figures: two Tandems and four SIPps share the
# cores, so CPU per call is higher than in a single run at the same rate.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 5 ] || { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 64; }
rate=$1 seconds=$2 rounds=$3 a=$4 b=$5
for binary in "$a" "$b"; do
  [ -x "$binary" ] || { echo "error: no binary at $binary" >&2; exit 64; }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# One bench/calls.sh run on the port set starting at $2 with RTP ports $3; key figures only.
run() {
  TANDEM_BIN=$1 SETTLE=3 TANDEM_PORT=$2 UAS_PORT=$(($2 + 10)) UAC_PORT=$(($2 + 20)) \
    WEBHOOK_PORT=$(($2 + 30)) HTTP_PORT=$(($2 + 28)) RTP_PORTS=$3 \
    bench/calls.sh "$rate" "$seconds" 2>&1 | grep '^rate=' |
    grep -oE 'failed=[0-9]+|cpu_ms_per_call=[0-9.]+|peak_rss_kib=[0-9]+' | tr '\n' ' '
}
cpu() { grep -oE 'cpu_ms_per_call=[0-9.]+' "$1" | cut -d= -f2; }

for round in $(seq 1 "$rounds"); do
  if [ $((round % 2)) = 1 ]; then
    set_a=(7060 10000-34999) set_b=(8060 35000-59999)
  else
    set_a=(8060 35000-59999) set_b=(7060 10000-34999)
  fi
  run "$a" "${set_a[@]}" >"$work/a" &
  job_a=$!
  run "$b" "${set_b[@]}" >"$work/b" &
  job_b=$!
  wait "$job_a" "$job_b"
  ratio=$(echo "scale=3; $(cpu "$work/b") / $(cpu "$work/a")" | bc -l 2>/dev/null || echo "-")
  echo "round $round: A $(cat "$work/a")| B $(cat "$work/b")| B/A $ratio"
done
