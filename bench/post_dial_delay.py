#!/usr/bin/env python3
"""Tandem's own post-dial delay, from a packet capture of bench/calls.sh (loopback, pcap).

Usage: bench/post_dial_delay.py CAPTURE.pcap --tandem-port P --uas-port P --webhook-port P

For each call whose every step is in the capture, with kernel timestamps of the packets:
  A  the caller's INVITE reaches Tandem          B  Tandem's webhook request starts
  C  the webhook's response has arrived          E  Tandem's INVITE to the callee
  F  the callee's 180 reaches Tandem             D  Tandem's 180 (answerOnBridge) or 200
                                                    (plain <Dial>: answered at once) to the caller
Tandem's own delay is the time the call waits on Tandem alone:
  plain <Dial>:              (B - A) + (D - C)
  <Dial answerOnBridge>:     (B - A) + (E - C) + (D - F)
that is, INVITE in to first ringing/answer out, minus the webhook's round trip (C - B) and, with
answerOnBridge, minus the callee's own answer time (F - E). The caller's From user (c<N>, set by
bench/sipp/uac.xml) matches the webhook request (its From parameter) and the dialled leg (its
From user, the caller ID). Only the standard library is used.
"""

import argparse
import re
import struct
import sys
from urllib.parse import unquote_plus

FROM_USER = re.compile(rb"^(?:From|f)\s*:[^\r\n]*?sip:([^@;>\s]+)@", re.I | re.M)
CALL_ID = re.compile(rb"^(?:Call-ID|i)\s*:\s*(\S+)", re.I | re.M)
CSEQ = re.compile(rb"^CSeq\s*:\s*\d+\s+(\w+)", re.I | re.M)
WEBHOOK_FROM = re.compile(rb"(?:^|[&?\s])From=([^&\s]*)")


def packets(path):
    """Yields (timestamp in seconds, protocol number, source port, destination port, payload)."""
    with open(path, "rb") as capture:
        header = capture.read(24)
        if len(header) < 24:
            return
        magic = struct.unpack("<I", header[:4])[0]
        if magic in (0xA1B2C3D4, 0xA1B23C4D):
            order = "<"
        else:
            order = ">"
            magic = struct.unpack(">I", header[:4])[0]
        fraction = 1e-9 if magic == 0xA1B23C4D else 1e-6
        linktype = struct.unpack(order + "I", header[20:24])[0]
        # Ethernet (lo), Linux cooked v1 and v2 (-i any).
        link_bytes = {1: 14, 113: 16, 276: 20}.get(linktype)
        if link_bytes is None:
            sys.exit(f"unsupported link type {linktype}")
        while True:
            record = capture.read(16)
            if len(record) < 16:
                return
            seconds, fractional, captured, _ = struct.unpack(order + "IIII", record)
            frame = capture.read(captured)
            ip = frame[link_bytes:]
            if len(ip) < 20 or ip[0] >> 4 != 4:
                continue
            ip_header = (ip[0] & 0x0F) * 4
            protocol = ip[9]
            segment = ip[ip_header:]
            if protocol == 17 and len(segment) >= 8:
                payload = segment[8:]
            elif protocol == 6 and len(segment) >= 20:
                payload = segment[(segment[12] >> 4) * 4:]
            else:
                continue
            source, destination = struct.unpack(">HH", segment[:4])
            yield seconds + fractional * fraction, protocol, source, destination, payload


def percentile(values, fraction):
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, int(round(fraction * len(ordered) + 0.5)) - 1))
    return ordered[index]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("capture")
    parser.add_argument("--tandem-port", type=int, required=True)
    parser.add_argument("--uas-port", type=int, required=True)
    parser.add_argument("--webhook-port", type=int, required=True)
    parser.add_argument(
        "--slowest",
        type=int,
        default=0,
        help="also list the N calls with the longest delay, by arrival time (are they clustered?)",
    )
    options = parser.parse_args()

    calls = {}  # caller's From user -> {"A": .., "B": .., ...}
    caller_users = {}  # caller's Call-ID -> From user
    leg_users = {}  # callee leg's Call-ID -> From user
    request_user = {}  # webhook connection (Tandem's port) -> user of the request in flight
    request_start = {}  # webhook connection -> time its current request began

    def first(user, key, at):
        call = calls.setdefault(user, {})
        call.setdefault(key, at)

    for at, protocol, source, destination, payload in packets(options.capture):
        if protocol == 6:
            if not payload:
                continue
            if destination == options.webhook_port:
                if payload.startswith((b"POST ", b"GET ")):
                    request_start[source] = at
                    request_user.pop(source, None)
                found = WEBHOOK_FROM.search(payload)
                if found and source in request_start:
                    user = unquote_plus(found.group(1).decode("latin-1"))
                    request_user[source] = user
                    first(user, "B", request_start[source])
            elif source == options.webhook_port and destination in request_user:
                # The response's last segment: C is when the whole answer is in.
                calls.setdefault(request_user[destination], {})["C"] = at
            continue

        first_line, _, _ = payload.partition(b"\r\n")
        call_id = CALL_ID.search(payload)
        cseq = CSEQ.search(payload)
        if not call_id or not cseq or cseq.group(1) != b"INVITE":
            continue
        call_id = call_id.group(1)
        is_request = first_line.startswith(b"INVITE ")
        status = first_line[8:11] if first_line.startswith(b"SIP/2.0 ") else b""
        if destination == options.tandem_port and source != options.uas_port and is_request:
            user = FROM_USER.search(payload)
            if user:
                user = user.group(1).decode("latin-1")
                caller_users[call_id] = user
                first(user, "A", at)
        elif source == options.tandem_port and destination != options.uas_port and status:
            user = caller_users.get(call_id)
            if user and status in (b"180", b"200"):
                first(user, "D" + status.decode(), at)
        elif source == options.tandem_port and destination == options.uas_port and is_request:
            user = FROM_USER.search(payload)
            if user:
                user = user.group(1).decode("latin-1")
                leg_users[call_id] = user
                first(user, "E", at)
        elif source == options.uas_port and destination == options.tandem_port and status == b"180":
            user = leg_users.get(call_id)
            if user:
                first(user, "F", at)

    tandem, webhook, callee, wire, before, after = [], [], [], [], [], []
    arrivals = []  # (arrival, Tandem's delay), per call
    bridged = plain = 0
    for call in calls.values():
        if not all(key in call for key in ("A", "B", "C")):
            continue
        if "D180" in call and "E" in call and "F" in call:
            bridged += 1
            pre, post = call["B"] - call["A"], (call["E"] - call["C"]) + (call["D180"] - call["F"])
            callee.append(call["F"] - call["E"])
            wire.append(call["D180"] - call["A"])
        elif "D200" in call and "D180" not in call:
            plain += 1
            pre, post = call["B"] - call["A"], call["D200"] - call["C"]
            wire.append(call["D200"] - call["A"])
        else:
            continue
        before.append(pre)
        after.append(post)
        tandem.append(pre + post)
        arrivals.append((call["A"], pre, post))
        webhook.append(call["C"] - call["B"])

    if not tandem:
        sys.exit("no complete call in the capture")

    def line(name, values):
        milliseconds = [value * 1000 for value in values]
        return (
            f"{name}_ms: p50={percentile(milliseconds, 0.50):.3f} p90={percentile(milliseconds, 0.90):.3f} "
            f"p99={percentile(milliseconds, 0.99):.3f} max={max(milliseconds):.3f}"
        )

    print(f"calls_matched={len(tandem)} answer_on_bridge={bridged} plain={plain}")
    print(line("tandem_delay", tandem))
    print(line("tandem_before_webhook", before))
    print(line("tandem_after_webhook", after))
    print(line("webhook_round_trip", webhook))
    if callee:
        print(line("callee_answer", callee))
    print(line("wire_invite_to_first_ring_or_answer", wire))
    if options.slowest:
        start = min(arrival for arrival, _, _ in arrivals)
        slowest = sorted(arrivals, key=lambda call: call[1] + call[2], reverse=True)
        print(f"slowest {options.slowest} by arrival (s since the first call; before/after webhook ms):")
        for arrival, pre, post in sorted(slowest[: options.slowest]):
            print(f"  {arrival - start:9.4f}  {pre * 1000:7.3f} {post * 1000:7.3f}")


if __name__ == "__main__":
    main()
