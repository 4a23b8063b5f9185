//! Benchmark: N concurrent relayed calls on 127.0.0.1, each fed by two "phones" sending 50
//! packets/s of 160-octet PCMU per direction (the target: 2,000 calls, 200,000
//! relayed packets/s, no drops in the kernel).
//!
//! The relays run on [`Relays`] threads (`tandem-relay`), as in Tandem. The phones are a load
//! generator of its own threads (`load`), each a mio loop that sends every call's two packets
//! once per 20 ms (calls spread evenly over the 20 ms, sent in 1 ms slices) and reads what the
//! relays send back. So that the generator's own cost stays small next to the relay's, the
//! phones of many calls share a socket (the calls of one slice share a pair of the
//! `PHONE_SOCKETS` sockets of their generator thread, so a slice's packets leave in one
//! `sendmmsg` per socket); the relay does exactly the work it does for phones on separate
//! addresses. Each payload starts with the send instant (nanoseconds since
//! the benchmark's epoch), so the receiving phone measures the added latency of sender socket
//! → relay → receiver socket.
//!
//! Reported: packets/s relayed, loss (sent − received), the kernel's UDP receive-buffer drops
//! over the run (`RcvbufErrors` in /proc/net/snmp, machine-wide), the latency distribution,
//! and the CPU time of the relay threads and of the generator (/proc/self/task/*/schedstat).
//!
//! Run: `cargo bench -p media --bench rtp_relay` (env: RTP_BENCH_CALLS, default 500;
//! RTP_BENCH_SECONDS, default 5; RTP_BENCH_RELAY_THREADS, default 1; RTP_BENCH_LOAD_THREADS,
//! default 1).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark binary: failing loudly is right

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use media::rtp::forward::LegFormat;
use media::rtp::packet::{self, Header};
use media::rtp::relay::{Leg, RelayConfig, RelayReport, Relays, RelaysConfig};
use media::rtp::{Codec, PayloadType, RtpTimestamp, SeqNo, Ssrc, PACKET_INTERVAL};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use nix::sys::socket::{sendmmsg, setsockopt, sockopt, MsgFlags, MultiHeaders, SockaddrIn};
use std::io::IoSlice;

const PCMU_LEG: LegFormat = LegFormat {
    codec: Codec::Pcmu,
    payload_type: PayloadType::PCMU,
    telephone_event: None,
};

/// Phone sockets per generator thread, shared by its calls' legs (an even number: pairs).
const PHONE_SOCKETS: usize = 32;

/// Slices the 20 ms packet interval is sent in.
const SLICES: u32 = 20;

/// One call as the generator sees it: where its two legs' packets go.
struct GeneratedCall {
    relay_a: SocketAddr,
    relay_b: SocketAddr,
    /// Indices into the thread's phone sockets.
    phone_a: usize,
    phone_b: usize,
    header: Header,
}

/// What one generator thread counted.
#[derive(Default)]
struct Counts {
    sent: u64,
    send_failures: u64,
    received: u64,
    /// Added latency of every packet received, in microseconds.
    latencies: Vec<u32>,
}

fn main() {
    let calls: usize = env_or("RTP_BENCH_CALLS", 500);
    let seconds: u64 = env_or("RTP_BENCH_SECONDS", 5);
    let relay_threads: usize = env_or("RTP_BENCH_RELAY_THREADS", 1);
    let load_threads: usize = env_or("RTP_BENCH_LOAD_THREADS", 1).max(1);
    let duration = Duration::from_secs(seconds);

    let relays = Relays::spawn(RelaysConfig {
        threads: relay_threads,
    })
    .unwrap();
    let phones: Vec<Vec<UdpSocket>> = (0..load_threads)
        .map(|_| (0..PHONE_SOCKETS).map(|_| phone_socket()).collect())
        .collect();
    let mut generated: Vec<Vec<GeneratedCall>> = (0..load_threads).map(|_| Vec::new()).collect();
    let mut running = Vec::with_capacity(calls);
    for index in 0..calls {
        let thread = index % load_threads;
        let slot = index / load_threads;
        let per_slice = per_slice(calls.div_ceil(load_threads));
        let pair = slot / per_slice % (PHONE_SOCKETS / 2);
        let (phone_a, phone_b) = (2 * pair, 2 * pair + 1);
        let (relay_a, relay_b) = (Arc::new(bind()), Arc::new(bind()));
        let call = GeneratedCall {
            relay_a: relay_a.local_addr().unwrap(),
            relay_b: relay_b.local_addr().unwrap(),
            phone_a,
            phone_b,
            header: Header {
                payload_type: PayloadType::PCMU,
                marker: false,
                sequence: SeqNo(0),
                timestamp: RtpTimestamp(0),
                ssrc: Ssrc::random(),
            },
        };
        let leg = |socket: Arc<UdpSocket>, phone: usize| Leg {
            socket,
            remote: phones[thread][phone].local_addr().unwrap(),
            format: PCMU_LEG,
            latching: false,
            rtcp: None,
        };
        running.push(relays.relay(
            leg(relay_a, phone_a),
            leg(relay_b, phone_b),
            RelayConfig::default(),
        ));
        generated[thread].push(call);
    }

    let epoch = Instant::now();
    let sending = Arc::new(AtomicBool::new(true));
    let drops_before = receive_buffer_errors();
    let cpu_before = cpu_times();
    let wall_before = Instant::now();
    let generators: Vec<_> = phones
        .into_iter()
        .zip(generated)
        .map(|(sockets, calls)| {
            let sending = Arc::clone(&sending);
            std::thread::Builder::new()
                .name("load".to_owned())
                .spawn(move || generate(epoch, sending, sockets, calls))
                .unwrap()
        })
        .collect();
    std::thread::sleep(duration);
    sending.store(false, Ordering::Relaxed);
    let wall = wall_before.elapsed();
    let cpu_after = cpu_times();
    // The generators keep receiving for 300 ms after their last send, so packets in flight
    // are not counted as lost.
    let counts: Vec<Counts> = generators
        .into_iter()
        .map(|generator| generator.join().unwrap())
        .collect();
    let drops = receive_buffer_errors().saturating_sub(drops_before);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let reports: Vec<RelayReport> = runtime.block_on(async {
        let mut reports = Vec::with_capacity(calls);
        for relay in running {
            reports.push(relay.stop().await);
        }
        reports
    });

    let sent: u64 = counts.iter().map(|count| count.sent).sum();
    let generator_failures: u64 = counts.iter().map(|count| count.send_failures).sum();
    let received: u64 = counts.iter().map(|count| count.received).sum();
    let forwarded: u64 = reports
        .iter()
        .map(|report| report.a_to_b.forwarded + report.b_to_a.forwarded)
        .sum();
    let relay_failures: u64 = reports
        .iter()
        .map(|report| report.a_to_b.send_failures + report.b_to_a.send_failures)
        .sum();
    let mut latencies: Vec<u32> = counts
        .into_iter()
        .flat_map(|count| count.latencies)
        .collect();
    latencies.sort_unstable();
    let quantile = |q: f64| {
        let index = ((latencies.len() as f64 - 1.0) * q).round() as usize;
        Duration::from_micros(latencies.get(index).copied().unwrap_or_default().into())
    };
    let seconds = wall.as_secs_f64();
    let share = |time: Duration| 100.0 * time.as_secs_f64() / seconds;
    let relay_cpu = cpu_after.relay.saturating_sub(cpu_before.relay);
    let load_cpu = cpu_after.load.saturating_sub(cpu_before.load);
    println!(
        "rtp_relay: {calls} calls × 2 directions × 50 packets/s for {seconds:.2} s \
         (relay threads {relay_threads}, load threads {load_threads})"
    );
    println!(
        "  phones sent {sent} ({:.0}/s, ideal {:.0}/s; {generator_failures} not taken), \
         relay forwarded {forwarded} ({:.0}/s), phones received {received}; loss {} ({:.3}%), \
         relay send failures {relay_failures}, kernel receive-buffer drops {drops}",
        sent as f64 / seconds,
        calls as f64 * 100.0,
        forwarded as f64 / seconds,
        sent.saturating_sub(received),
        100.0 * sent.saturating_sub(received) as f64 / sent.max(1) as f64,
    );
    println!(
        "  added latency ({} samples): p50 {:?} p90 {:?} p99 {:?} p99.9 {:?} max {:?}",
        latencies.len(),
        quantile(0.50),
        quantile(0.90),
        quantile(0.99),
        quantile(0.999),
        quantile(1.0),
    );
    println!(
        "  CPU: relay threads {:.2} s ({:.0}% of one core; {:.2} µs per relayed packet), \
         generator {:.2} s ({:.0}% of one core)",
        relay_cpu.as_secs_f64(),
        share(relay_cpu),
        relay_cpu.as_secs_f64() * 1e6 / forwarded.max(1) as f64,
        load_cpu.as_secs_f64(),
        share(load_cpu),
    );
}

/// One generator thread: sends every call's two packets per 20 ms in [`SLICES`] slices while
/// `sending`, reads its phone sockets throughout, then drains for 300 ms.
fn generate(
    epoch: Instant,
    sending: Arc<AtomicBool>,
    sockets: Vec<UdpSocket>,
    mut calls: Vec<GeneratedCall>,
) -> Counts {
    let mut poll = Poll::new().unwrap();
    for (index, socket) in sockets.iter().enumerate() {
        poll.registry()
            .register(
                &mut SourceFd(&socket.as_raw_fd()),
                Token(index),
                Interest::READABLE,
            )
            .unwrap();
    }
    let mut events = Events::with_capacity(PHONE_SOCKETS);
    let mut counts = Counts {
        latencies: Vec::with_capacity(calls.len() * 2 * 50 * 12),
        ..Counts::default()
    };
    let mut payload = [0xFFu8; 160];
    let slice = PACKET_INTERVAL / SLICES;
    let per_slice = per_slice(calls.len());
    let mut outs: Vec<Vec<u8>> = (0..per_slice).map(|_| Vec::with_capacity(256)).collect();
    let mut buffer = [0u8; 2048];
    let mut next_slice = Instant::now();
    let mut slice_index = 0usize;
    let mut stop_at: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if stop_at.is_none() && now >= next_slice {
            if sending.load(Ordering::Relaxed) {
                let first = slice_index * per_slice;
                let last = (first + per_slice).min(calls.len());
                let slice_calls = calls.get_mut(first..last).unwrap_or_default();
                for call in slice_calls.iter_mut() {
                    call.header.sequence = call.header.sequence.wrapping_add(1);
                    call.header.timestamp = call.header.timestamp.wrapping_add(160);
                }
                for side in [Side::A, Side::B] {
                    let Some(first_call) = slice_calls.first() else {
                        break;
                    };
                    let phone = match side {
                        Side::A => first_call.phone_a,
                        Side::B => first_call.phone_b,
                    };
                    let mut destinations = Vec::with_capacity(slice_calls.len());
                    for (call, out) in slice_calls.iter().zip(outs.iter_mut()) {
                        let sent_at = epoch.elapsed().as_nanos() as u64;
                        payload[..8].copy_from_slice(&sent_at.to_be_bytes());
                        packet::write(&call.header, &payload, out);
                        let relay = match side {
                            Side::A => call.relay_a,
                            Side::B => call.relay_b,
                        };
                        let SocketAddr::V4(relay) = relay else {
                            unreachable!("the relays are bound on 127.0.0.1");
                        };
                        destinations.push(Some(SockaddrIn::from(relay)));
                    }
                    let slices: Vec<[IoSlice<'_>; 1]> = outs[..slice_calls.len()]
                        .iter()
                        .map(|out| [IoSlice::new(out)])
                        .collect();
                    let mut headers = MultiHeaders::<SockaddrIn>::preallocate(slices.len(), None);
                    let sent = sendmmsg(
                        sockets[phone].as_raw_fd(),
                        &mut headers,
                        &slices,
                        &destinations,
                        [],
                        MsgFlags::empty(),
                    )
                    .map_or(0, |results| results.count() as u64);
                    counts.sent += sent;
                    counts.send_failures += slices.len() as u64 - sent;
                }
                slice_index = (slice_index + 1) % SLICES as usize;
                next_slice += slice;
            } else {
                stop_at = Some(now + Duration::from_millis(300));
            }
        }
        let deadline = stop_at.unwrap_or(next_slice);
        if now >= deadline && stop_at.is_some() {
            return counts;
        }
        poll.poll(&mut events, Some(deadline.saturating_duration_since(now)))
            .unwrap();
        for event in &events {
            let socket = &sockets[event.token().0];
            while let Ok((length, _)) = socket.recv_from(&mut buffer) {
                record(epoch, &buffer[..length], &mut counts);
            }
        }
    }
}

/// Which phone of a call.
#[derive(Clone, Copy)]
enum Side {
    A,
    B,
}

/// How many of a generator thread's `calls` send in each slice.
fn per_slice(calls: usize) -> usize {
    calls.div_ceil(SLICES as usize).max(1)
}

fn record(epoch: Instant, datagram: &[u8], counts: &mut Counts) {
    let now = epoch.elapsed().as_nanos() as u64;
    let Ok(packet) = media::rtp::Packet::parse(datagram) else {
        return;
    };
    let Some(stamp) = packet.payload.get(..8) else {
        return;
    };
    let sent_at = u64::from_be_bytes(stamp.try_into().unwrap());
    counts.received += 1;
    let micros = now.saturating_sub(sent_at) / 1_000;
    counts
        .latencies
        .push(u32::try_from(micros).unwrap_or(u32::MAX));
}

fn bind() -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_nonblocking(true).unwrap();
    socket
}

/// A generator socket: it receives many calls' packets, so its receive buffer is raised
/// (past `net.core.rmem_max` when the process may), lest the generator's own drops be taken
/// for the relay's.
fn phone_socket() -> UdpSocket {
    let socket = bind();
    if setsockopt(&socket, sockopt::RcvBufForce, &PHONE_RECEIVE_BUFFER).is_err() {
        let _ = setsockopt(&socket, sockopt::RcvBuf, &PHONE_RECEIVE_BUFFER);
    }
    socket
}

/// Receive buffer of a generator socket.
const PHONE_RECEIVE_BUFFER: usize = 4 << 20;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// The machine's UDP `RcvbufErrors` counter (datagrams dropped because a socket's receive
/// buffer was full).
fn receive_buffer_errors() -> u64 {
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut udp = snmp.lines().filter(|line| line.starts_with("Udp:"));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(name, _)| *name == "RcvbufErrors")
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or_default()
}

/// CPU time so far of the relay threads and of the generator threads.
struct CpuTimes {
    relay: Duration,
    load: Duration,
}

/// Sums the first field of /proc/self/task/*/schedstat (ns on CPU) over the threads named
/// `tandem-relay` and over those named `load`.
fn cpu_times() -> CpuTimes {
    let mut times = CpuTimes {
        relay: Duration::ZERO,
        load: Duration::ZERO,
    };
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let path = task.path();
        let Ok(schedstat) = std::fs::read_to_string(path.join("schedstat")) else {
            continue;
        };
        let nanoseconds: u64 = schedstat
            .split_whitespace()
            .next()
            .and_then(|field| field.parse().ok())
            .unwrap_or_default();
        let time = Duration::from_nanos(nanoseconds);
        match std::fs::read_to_string(path.join("comm"))
            .unwrap_or_default()
            .trim()
        {
            "tandem-relay" => times.relay += time,
            "load" => times.load += time,
            _ => {}
        }
    }
    times
}
