//! Benchmark: N concurrent relayed calls on 127.0.0.1, each fed by two local "phones" sending
//! 50 packets/s of 160-octet PCMU per direction (the target: 2,000 calls, 200,000
//! relayed packets/s).
//!
//! The relays run on their own multi-thread tokio runtime (threads named `relay-worker`);
//! the phones run on another (`load-worker`), one task per call that sends on both legs every
//! 20 ms (start phases spread over the 20 ms) and receives on both. Each payload starts with
//! the send instant (nanoseconds since the benchmark's epoch), so the receiving phone computes
//! the added latency of sender socket → relay → receiver socket. Reported: packets/s relayed,
//! loss (sent − received), the latency distribution, and CPU time of the whole process and of
//! the relay workers alone (from /proc/self/task/*/schedstat).
//!
//! Run: `cargo bench -p media --bench rtp_relay` (env: RTP_BENCH_CALLS, default 500;
//! RTP_BENCH_SECONDS, default 5; RTP_BENCH_RELAY_THREADS and RTP_BENCH_LOAD_THREADS, default 1
//! each).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark binary: failing loudly is right

use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use media::rtp::forward::LegFormat;
use media::rtp::packet::{self, Header};
use media::rtp::relay::{Leg, Relay, RelayConfig, RelayReport};
use media::rtp::{Codec, PayloadType, RtpTimestamp, SeqNo, Ssrc, PACKET_INTERVAL};
use tokio::net::UdpSocket;

const PCMU_LEG: LegFormat = LegFormat {
    codec: Codec::Pcmu,
    payload_type: PayloadType::PCMU,
    telephone_event: None,
};

/// What one call's phones counted.
#[derive(Default)]
struct PhoneCounts {
    sent: u64,
    received: u64,
    /// Added latency of every packet received, in microseconds.
    latencies: Vec<u32>,
}

fn main() {
    let calls: usize = env_or("RTP_BENCH_CALLS", 500);
    let seconds: u64 = env_or("RTP_BENCH_SECONDS", 5);
    let relay_threads: usize = env_or("RTP_BENCH_RELAY_THREADS", 1);
    let load_threads: usize = env_or("RTP_BENCH_LOAD_THREADS", 1);
    let duration = Duration::from_secs(seconds);

    let relay_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(relay_threads)
        .thread_name("relay-worker")
        .enable_all()
        .build()
        .unwrap();
    let load_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(load_threads)
        .thread_name("load-worker")
        .enable_all()
        .build()
        .unwrap();

    // Sockets: per call, the relay's two (on the relay runtime) and the two phones' (load).
    let mut relays = Vec::with_capacity(calls);
    let mut phones = Vec::with_capacity(calls);
    for _ in 0..calls {
        let (relay_a, relay_b) = (bind_std(), bind_std());
        let (phone_a, phone_b) = (bind_std(), bind_std());
        let (relay_a_address, relay_b_address) = (address(&relay_a), address(&relay_b));
        let (phone_a_address, phone_b_address) = (address(&phone_a), address(&phone_b));
        {
            let _context = relay_runtime.enter();
            let leg = |socket: StdUdpSocket, remote: SocketAddr| Leg {
                socket: Arc::new(UdpSocket::from_std(socket).unwrap()),
                remote,
                format: PCMU_LEG,
                latching: false,
                rtcp: None,
            };
            relays.push(Relay::spawn(
                leg(relay_a, phone_a_address),
                leg(relay_b, phone_b_address),
                RelayConfig::default(),
            ));
        }
        phones.push((phone_a, relay_a_address, phone_b, relay_b_address));
    }

    let epoch = Instant::now();
    let sending = Arc::new(AtomicBool::new(true));
    let cpu_before = cpu_times();
    let wall_before = Instant::now();
    let tasks: Vec<_> = phones
        .into_iter()
        .enumerate()
        .map(|(index, (phone_a, relay_a, phone_b, relay_b))| {
            let sending = Arc::clone(&sending);
            let phase = PACKET_INTERVAL.mul_f64(index as f64 / calls as f64);
            load_runtime.spawn(async move {
                let phone_a = UdpSocket::from_std(phone_a).unwrap();
                let phone_b = UdpSocket::from_std(phone_b).unwrap();
                run_call(
                    epoch,
                    phase,
                    sending,
                    (phone_a, relay_a),
                    (phone_b, relay_b),
                )
                .await
            })
        })
        .collect();
    std::thread::sleep(duration);
    sending.store(false, Ordering::Relaxed);
    let wall = wall_before.elapsed();
    let cpu_after = cpu_times();
    // The call tasks keep receiving for 300 ms after the last send, so in-flight packets
    // are not counted as lost.
    let counts: Vec<PhoneCounts> = load_runtime.block_on(async {
        let mut counts = Vec::with_capacity(calls);
        for task in tasks {
            counts.push(task.await.unwrap());
        }
        counts
    });
    let reports: Vec<RelayReport> = relay_runtime.block_on(async {
        let mut reports = Vec::with_capacity(calls);
        for relay in relays {
            reports.push(relay.stop().await);
        }
        reports
    });

    let sent: u64 = counts.iter().map(|count| count.sent).sum();
    let received: u64 = counts.iter().map(|count| count.received).sum();
    let forwarded: u64 = reports
        .iter()
        .map(|report| report.a_to_b.forwarded + report.b_to_a.forwarded)
        .sum();
    let send_failures: u64 = reports
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
    let (process_cpu, relay_cpu) = (
        cpu_after.process.saturating_sub(cpu_before.process),
        cpu_after.relay.saturating_sub(cpu_before.relay),
    );
    let seconds = wall.as_secs_f64();
    println!(
        "rtp_relay: {calls} calls × 2 directions × 50 packets/s for {seconds:.2} s \
         (relay threads {relay_threads}, load threads {load_threads})"
    );
    println!(
        "  phones sent {sent} ({:.0}/s, ideal {:.0}/s), relay forwarded {forwarded} ({:.0}/s), \
         phones received {received}; loss {} ({:.3}%), relay send failures {send_failures}",
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
        "  CPU: process {:.2} s ({:.0}% of one core), relay workers {:.2} s ({:.0}% of one core; \
         {:.1} µs per relayed packet)",
        process_cpu.as_secs_f64(),
        100.0 * process_cpu.as_secs_f64() / seconds,
        relay_cpu.as_secs_f64(),
        100.0 * relay_cpu.as_secs_f64() / seconds,
        relay_cpu.as_secs_f64() * 1e6 / forwarded.max(1) as f64,
    );
}

/// One call's phones: send on both legs every 20 ms while `sending`, receive on both, then
/// drain for 300 ms.
async fn run_call(
    epoch: Instant,
    phase: Duration,
    sending: Arc<AtomicBool>,
    (phone_a, relay_a): (UdpSocket, SocketAddr),
    (phone_b, relay_b): (UdpSocket, SocketAddr),
) -> PhoneCounts {
    let mut counts = PhoneCounts {
        latencies: Vec::with_capacity(128 * 50),
        ..PhoneCounts::default()
    };
    let mut ticks = tokio::time::interval_at((Instant::now() + phase).into(), PACKET_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut header = Header {
        payload_type: PayloadType::PCMU,
        marker: false,
        sequence: SeqNo(0),
        timestamp: RtpTimestamp(0),
        ssrc: Ssrc::random(),
    };
    let mut payload = [0xFFu8; 160];
    let mut out = Vec::with_capacity(256);
    let (mut buffer_a, mut buffer_b) = ([0u8; 2048], [0u8; 2048]);
    let drain = tokio::time::sleep(Duration::from_secs(3600));
    tokio::pin!(drain);
    let mut draining = false;
    loop {
        tokio::select! {
            _ = ticks.tick(), if !draining => {
                if !sending.load(Ordering::Relaxed) {
                    draining = true;
                    drain.as_mut().reset((Instant::now() + Duration::from_millis(300)).into());
                    continue;
                }
                header.sequence = header.sequence.wrapping_add(1);
                header.timestamp = header.timestamp.wrapping_add(160);
                for (socket, relay) in [(&phone_a, relay_a), (&phone_b, relay_b)] {
                    let sent_at = epoch.elapsed().as_nanos() as u64;
                    payload[..8].copy_from_slice(&sent_at.to_be_bytes());
                    packet::write(&header, &payload, &mut out);
                    if socket.send_to(&out, relay).await.is_ok() {
                        counts.sent += 1;
                    }
                }
            }
            received = phone_a.recv_from(&mut buffer_a) => {
                if let Ok((length, _)) = received {
                    record(epoch, &buffer_a[..length], &mut counts);
                }
            }
            received = phone_b.recv_from(&mut buffer_b) => {
                if let Ok((length, _)) = received {
                    record(epoch, &buffer_b[..length], &mut counts);
                }
            }
            _ = &mut drain, if draining => break,
        }
    }
    counts
}

fn record(epoch: Instant, datagram: &[u8], counts: &mut PhoneCounts) {
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

fn bind_std() -> StdUdpSocket {
    let socket = StdUdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_nonblocking(true).unwrap();
    socket
}

fn address(socket: &StdUdpSocket) -> SocketAddr {
    socket.local_addr().unwrap()
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// CPU time so far of the whole process and of the relay runtime's workers.
struct CpuTimes {
    process: Duration,
    relay: Duration,
}

/// Sums the first field of /proc/self/task/*/schedstat (ns on CPU) over all threads, and over
/// the threads named `relay-worker`.
fn cpu_times() -> CpuTimes {
    let mut times = CpuTimes {
        process: Duration::ZERO,
        relay: Duration::ZERO,
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
        times.process += time;
        let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if name.trim() == "relay-worker" {
            times.relay += time;
        }
    }
    times
}
