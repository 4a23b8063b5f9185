//! Benchmark: 1,000 concurrent prompt streams from one player to local UDP sockets.
//!
//! Measures, at the sender, the distribution of intervals between consecutive packets of a
//! stream (the player's own clock read after each send; ideal: 20 ms) and the CPU time of
//! the thread that runs the player (a current-thread tokio runtime, so the player task, its
//! timer and its sends are all on that thread), from /proc/thread-self/schedstat.
//! Receivers drain the packets on other threads and count them.
//!
//! Run: `cargo bench -p media --bench rtp_streams` (env: RTP_BENCH_STREAMS, default 1000;
//! RTP_BENCH_SECONDS, default 5).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark binary: failing loudly is right

use std::net::UdpSocket as StdUdpSocket;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use media::rtp::player::{Loops, Player, PlayerConfig, Prompt};
use media::rtp::{Codec, PayloadType, Sender};

const RECEIVERS: usize = 4;

fn main() {
    let streams: usize = env_or("RTP_BENCH_STREAMS", 1_000);
    let seconds: u64 = env_or("RTP_BENCH_SECONDS", 5);

    let stop = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    let mut destinations = Vec::new();
    let mut receivers = Vec::new();
    for _ in 0..RECEIVERS {
        let socket = StdUdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        destinations.push(socket.local_addr().unwrap());
        let (stop, received) = (Arc::clone(&stop), Arc::clone(&received));
        receivers.push(std::thread::spawn(move || {
            let mut buffer = [0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                if socket.recv_from(&mut buffer).is_ok() {
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }

    let player_thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let player = Player::spawn(PlayerConfig {
                measure_intervals: true,
                ..PlayerConfig::default()
            });
            // One second of µ-law "audio", looped.
            let audio: Arc<[u8]> = (0..8_000).map(|index| (index % 251) as u8).collect();
            let mut playbacks = Vec::with_capacity(streams);
            for index in 0..streams {
                let socket = StdUdpSocket::bind("127.0.0.1:0").unwrap();
                socket.set_nonblocking(true).unwrap();
                let socket = Arc::new(socket);
                let prompt = Prompt {
                    socket,
                    destination: destinations[index % RECEIVERS],
                    audio: Arc::clone(&audio),
                    codec: if index % 2 == 0 {
                        Codec::Pcmu
                    } else {
                        Codec::Pcma
                    },
                    payload_type: if index % 2 == 0 {
                        PayloadType::PCMU
                    } else {
                        PayloadType::PCMA
                    },
                    loops: Loops::Forever,
                    sender: Sender::random(),
                };
                playbacks.push(player.play(prompt).unwrap());
            }
            // Let every stream send a few packets before measuring.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let before = player.statistics();
            let cpu_before = thread_cpu_time();
            let wall_before = Instant::now();
            tokio::time::sleep(Duration::from_secs(seconds)).await;
            let cpu = thread_cpu_time() - cpu_before;
            let wall = wall_before.elapsed();
            let after = player.statistics();
            for playback in &playbacks {
                playback.stop();
            }
            (before, after, cpu, wall)
        })
    });
    let (before, after, cpu, wall) = player_thread.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    for receiver in receivers {
        receiver.join().unwrap();
    }

    let sent = after.packets_sent - before.packets_sent;
    let expected = streams as f64 * wall.as_secs_f64() / 0.020;
    let intervals = &after.send_intervals;
    println!(
        "rtp_streams: {streams} streams for {:.2} s",
        wall.as_secs_f64()
    );
    println!(
        "  packets sent {sent} ({:.1}% of the ideal {expected:.0}), send failures {}, received (whole run) {}",
        100.0 * sent as f64 / expected,
        after.send_failures,
        received.load(Ordering::Relaxed)
    );
    println!(
        "  inter-packet interval at the sender ({} samples): p50 {:?} p90 {:?} p99 {:?} p99.9 {:?} max-bucket {:?}; min-side p1 {:?}",
        intervals.count(),
        intervals.quantile(0.50),
        intervals.quantile(0.90),
        intervals.quantile(0.99),
        intervals.quantile(0.999),
        intervals.quantile(1.0),
        intervals.quantile(0.01),
    );
    println!(
        "  player thread CPU {:.3} s over {:.3} s wall = {:.1}% of one core",
        cpu.as_secs_f64(),
        wall.as_secs_f64(),
        100.0 * cpu.as_secs_f64() / wall.as_secs_f64()
    );
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// CPU time of the calling thread: the first field of /proc/thread-self/schedstat (ns on CPU).
/// CPU time of the player's own thread (named `tandem-player`), from its schedstat.
fn thread_cpu_time() -> Duration {
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() == "tandem-player" {
            let text = std::fs::read_to_string(task.path().join("schedstat")).unwrap();
            let nanoseconds: u64 = text.split_whitespace().next().unwrap().parse().unwrap();
            return Duration::from_nanos(nanoseconds);
        }
    }
    panic!("no tandem-player thread");
}
