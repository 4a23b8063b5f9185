//! The prompt player: ONE thread with ONE 20 ms clock that streams every playing prompt, one
//! packet per stream per tick. There is no task or timer per stream or per packet, so a
//! thousand prompts cost one wake-up every 20 ms and a loop over a `Vec`.
//!
//! A dedicated OS thread rather than a tokio task: the runtime's timer has a 1 ms granularity
//! and its workers run other tasks between ticks, which showed as ±3 ms of send jitter; the
//! thread sleeps to the exact tick (tens of microseconds of slack) and nothing else runs on
//! it. Commands (play, stop) are taken at the tick, not by waking the thread: a prompt starts
//! at the next tick anyway, and under load a wake per command cost more than the streaming.
//! It only calls `send_to` on the calls' non-blocking sockets.
//!
//! Each stream is a socket, a destination, 8 kHz µ-law audio (as the prompt cache stores it)
//! and the codec the call negotiated: PCMU is sent as is, PCMA is transcoded per packet by
//! table look-up. Packets are 160 samples (20 ms); the last one of the audio is padded with
//! silence. A playing stream can be redirected to a new address and codec (a re-INVITE moved
//! the party's media). Timestamps advance by 160 per packet and the first packet carries the marker
//! (RFC 3551 §4.1); the caller passes the call's [`Sender`] in and gets it back when the
//! prompt ends, so one call's outgoing stream keeps its SSRC and numbering across prompts.
//!
//! Missed ticks burst: if the thread is late (a loaded machine), the missed ticks run back to
//! back and the streams catch up, so the send rate stays locked to the wall clock and the
//! 8 kHz timestamps never drift from real time (which RTCP's NTP/RTP timestamp pairing and the
//! peer's jitter buffer both assume). Delaying the schedule instead would shift every stream
//! later for good after each stall, and skipping ticks would drop audio.
//!
//! Sends never wait: a socket that cannot take a packet right now loses that packet
//! (counted) instead of stalling every other stream.

use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::sync::mpsc;

use tokio::sync::oneshot;

use super::packet;
use super::{Codec, PayloadType, Sender, PACKET_INTERVAL, SAMPLES_PER_PACKET};
use crate::codec;

/// How many times a prompt plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loops {
    /// This many times; 0 finishes at once.
    Times(u32),
    /// Until stopped (TwiML's `loop="0"`).
    Forever,
}

/// One prompt to stream.
#[derive(Debug, Clone)]
pub struct Prompt {
    /// The call's RTP socket, non-blocking.
    pub socket: Arc<UdpSocket>,
    /// Where to send (the peer's RTP address from SDP, or the latched one).
    pub destination: SocketAddr,
    /// 8 kHz µ-law audio.
    pub audio: Arc<[u8]>,
    /// The codec the call negotiated.
    pub codec: Codec,
    /// The codec's payload type in the call.
    pub payload_type: PayloadType,
    /// How many times to play.
    pub loops: Loops,
    /// Stamps the packets; returned in [`Finished`].
    pub sender: Sender,
}

/// How a prompt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// All loops played.
    Completed,
    /// Stopped by [`Playback::stop`] or by dropping the [`Playback`].
    Stopped,
}

/// A prompt's end: why, how many packets went out, and the sender to continue with.
#[derive(Debug, Clone)]
pub struct Finished {
    /// Why it ended.
    pub reason: FinishReason,
    /// Packets sent.
    pub packets_sent: u64,
    /// Packets that the socket did not take.
    pub send_failures: u64,
    /// The stream's sender, advanced past the last packet.
    pub sender: Sender,
}

/// Why the player could not do what was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PlayerError {
    /// The player thread has ended (or could not start).
    #[error("the prompt player is not running")]
    NotRunning,
}

/// Player settings.
#[derive(Debug, Clone, Copy)]
pub struct PlayerConfig {
    /// The tick: one packet per stream per tick. 20 ms for 160-sample G.711 packets.
    pub interval: Duration,
    /// Whether to record every stream's inter-packet send interval in
    /// [`PlayerStatistics::send_intervals`] (one clock read per packet; for benchmarks).
    pub measure_intervals: bool,
}

impl Default for PlayerConfig {
    fn default() -> Self {
        Self {
            interval: PACKET_INTERVAL,
            measure_intervals: false,
        }
    }
}

/// Counters of the player, published once per tick.
#[derive(Debug, Clone, Default)]
pub struct PlayerStatistics {
    /// Ticks run.
    pub ticks: u64,
    /// Packets sent.
    pub packets_sent: u64,
    /// Packets the sockets did not take.
    pub send_failures: u64,
    /// Streams playing after the last tick.
    pub streams: usize,
    /// The distribution of intervals between consecutive packets of a stream, when
    /// [`PlayerConfig::measure_intervals`] is on.
    pub send_intervals: IntervalHistogram,
}

/// A histogram of durations in 10 µs buckets up to 200 ms (longer ones land in the last).
#[derive(Debug, Clone)]
pub struct IntervalHistogram {
    buckets: Vec<u64>,
    count: u64,
}

/// A running player. Cloning shares it.
#[derive(Debug, Clone)]
pub struct Player {
    commands: mpsc::Sender<Command>,
    statistics: Arc<Mutex<PlayerStatistics>>,
    next_id: Arc<std::sync::atomic::AtomicU64>,
}

/// A playing prompt. Dropping it stops the prompt.
#[derive(Debug)]
pub struct Playback {
    id: u64,
    commands: mpsc::Sender<Command>,
    finished: Option<oneshot::Receiver<Finished>>,
}

#[derive(Debug)]
enum Command {
    Play {
        id: u64,
        prompt: Box<Prompt>,
        finished: oneshot::Sender<Finished>,
    },
    Stop {
        id: u64,
    },
    Redirect {
        id: u64,
        destination: SocketAddr,
        codec: Codec,
        payload_type: PayloadType,
    },
}

impl Player {
    /// Starts the player thread; it ends once the player and every playback are dropped.
    pub fn spawn(config: PlayerConfig) -> Self {
        let (commands, receiver) = mpsc::channel();
        let statistics = Arc::new(Mutex::new(PlayerStatistics::default()));
        let published = Arc::clone(&statistics);
        let spawned = std::thread::Builder::new()
            .name("tandem-player".to_owned())
            .spawn(move || {
                raise_priority();
                run(config, receiver, published)
            });
        if let Err(error) = spawned {
            // The receiver is gone with the closure: every `play` reports `NotRunning`.
            tracing::error!(%error, "the prompt player thread could not start");
        }
        Self {
            commands,
            statistics,
            next_id: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        }
    }

    /// Starts streaming `prompt` from the next tick.
    pub fn play(&self, prompt: Prompt) -> Result<Playback, PlayerError> {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (finished, receiver) = oneshot::channel();
        self.commands
            .send(Command::Play {
                id,
                prompt: Box::new(prompt),
                finished,
            })
            .map_err(|_| PlayerError::NotRunning)?;
        Ok(Playback {
            id,
            commands: self.commands.clone(),
            finished: Some(receiver),
        })
    }

    /// The counters as of the last tick.
    pub fn statistics(&self) -> PlayerStatistics {
        self.statistics
            .lock()
            .map(|statistics| statistics.clone())
            .unwrap_or_default()
    }
}

impl Playback {
    /// Asks the player to stop this prompt; [`Playback::finished`] then reports `Stopped`.
    pub fn stop(&self) {
        let _ = self.commands.send(Command::Stop { id: self.id });
    }

    /// Sends the rest of the prompt to `destination` in `codec` under `payload_type`, from the
    /// next tick: the party's re-INVITE moved or re-formatted its media (RFC 3264 §8). The
    /// stream goes on (same SSRC, numbering and timing), as the forwarded one does in a relay.
    pub fn redirect(&self, destination: SocketAddr, codec: Codec, payload_type: PayloadType) {
        let _ = self.commands.send(Command::Redirect {
            id: self.id,
            destination,
            codec,
            payload_type,
        });
    }

    /// Waits until the prompt ends. Cancel-safe: a wait abandoned (in a `select!`) can be
    /// resumed. Once the result was returned, later calls return [`PlayerError::NotRunning`].
    pub async fn finished(&mut self) -> Result<Finished, PlayerError> {
        let receiver = self.finished.as_mut().ok_or(PlayerError::NotRunning)?;
        let result = receiver.await;
        self.finished = None;
        result.map_err(|_| PlayerError::NotRunning)
    }
}

impl Drop for Playback {
    fn drop(&mut self) {
        if self.finished.is_some() {
            self.stop();
        }
    }
}

impl Default for IntervalHistogram {
    fn default() -> Self {
        Self {
            buckets: vec![0; HISTOGRAM_BUCKETS],
            count: 0,
        }
    }
}

impl IntervalHistogram {
    /// Records one duration.
    pub fn record(&mut self, duration: Duration) {
        let bucket = (duration.as_micros() / HISTOGRAM_RESOLUTION_MICROS) as usize;
        let bucket = bucket.min(HISTOGRAM_BUCKETS - 1);
        self.buckets[bucket] += 1;
        self.count += 1;
    }

    /// Durations recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The smallest bucket bound below which at least `quantile` (0–1) of the durations lie.
    pub fn quantile(&self, quantile: f64) -> Duration {
        let target = (quantile.clamp(0.0, 1.0) * self.count as f64).ceil() as u64;
        let mut seen = 0;
        for (bucket, &count) in self.buckets.iter().enumerate() {
            seen += count;
            if seen >= target.max(1) {
                return Duration::from_micros(
                    (bucket as u64 + 1) * HISTOGRAM_RESOLUTION_MICROS as u64,
                );
            }
        }
        Duration::from_micros(HISTOGRAM_BUCKETS as u64 * HISTOGRAM_RESOLUTION_MICROS as u64)
    }

    /// Adds another histogram's counts.
    pub fn merge(&mut self, other: &Self) {
        for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
            *mine += theirs;
        }
        self.count += other.count;
    }
}

const HISTOGRAM_RESOLUTION_MICROS: u128 = 10;
const HISTOGRAM_BUCKETS: usize = 20_000;

/// One playing stream inside the task.
struct Stream {
    id: u64,
    prompt: Prompt,
    position: usize,
    loops_left: Option<u32>,
    packets_sent: u64,
    send_failures: u64,
    last_sent: Option<Instant>,
    finished: oneshot::Sender<Finished>,
}

fn run(
    config: PlayerConfig,
    commands: mpsc::Receiver<Command>,
    shared: Arc<Mutex<PlayerStatistics>>,
) {
    let mut streams: Vec<Stream> = Vec::new();
    let mut completed: Vec<Stream> = Vec::new();
    let mut statistics = PlayerStatistics::default();
    let mut payload = vec![0u8; SAMPLES_PER_PACKET as usize];
    let mut out = Vec::with_capacity(packet::HEADER_LEN + payload.len());
    let mut next_tick = Instant::now();
    loop {
        if streams.is_empty() {
            // Idle: no ticking until there is something to play.
            let Ok(command) = commands.recv() else {
                return;
            };
            handle_command(command, &mut streams);
            // The first packet goes out now and the next ones every interval from here.
            next_tick = Instant::now();
            continue;
        }
        // Sleep until the tick, then take the commands that came meanwhile: they wait for the
        // tick anyway (a prompt starts at the next one), and not being woken by every play
        // and stop spares the senders a futex wake and this thread a context switch each.
        let now = Instant::now();
        if next_tick > now {
            std::thread::sleep(next_tick - now);
        }
        loop {
            match commands.try_recv() {
                Ok(command) => handle_command(command, &mut streams),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => return,
            }
        }
        statistics.ticks += 1;
        let mut index = 0;
        while index < streams.len() {
            let stream = &mut streams[index];
            let done = send_next(
                stream,
                &mut payload,
                &mut out,
                &mut statistics,
                config.measure_intervals,
            );
            if done {
                completed.push(streams.swap_remove(index));
            } else {
                index += 1;
            }
        }
        statistics.streams = streams.len();
        if let Ok(mut published) = shared.lock() {
            published.clone_from(&statistics);
        }
        // Reported after publishing, so whoever hears of the end sees the counters.
        for stream in completed.drain(..) {
            finish(stream, FinishReason::Completed);
        }
        // Locked to the wall clock: a late tick is followed at once by the ones it missed.
        next_tick += config.interval;
    }
}

/// Asks for real-time scheduling (SCHED_FIFO, lowest real-time priority): a paced sender must
/// run when its tick comes, not after whatever else the machine is doing, as media servers'
/// timing threads do. Without the privilege (CAP_SYS_NICE) the thread stays a normal one,
/// which is logged once.
fn raise_priority() {
    use thread_priority::{
        set_thread_priority_and_policy, thread_native_id, RealtimeThreadSchedulePolicy,
        ThreadPriority, ThreadSchedulePolicy,
    };
    let raised = set_thread_priority_and_policy(
        thread_native_id(),
        ThreadPriority::Min,
        ThreadSchedulePolicy::Realtime(RealtimeThreadSchedulePolicy::Fifo),
    );
    if let Err(error) = raised {
        tracing::info!(?error, "prompt player runs without real-time priority");
    }
}

fn handle_command(command: Command, streams: &mut Vec<Stream>) {
    match command {
        Command::Play {
            id,
            prompt,
            finished,
        } => {
            let loops_left = match prompt.loops {
                Loops::Times(times) => Some(times),
                Loops::Forever => None,
            };
            let stream = Stream {
                id,
                prompt: *prompt,
                position: 0,
                loops_left,
                packets_sent: 0,
                send_failures: 0,
                last_sent: None,
                finished,
            };
            if stream.loops_left == Some(0) || stream.prompt.audio.is_empty() {
                finish(stream, FinishReason::Completed);
            } else {
                streams.push(stream);
            }
        }
        Command::Stop { id } => {
            if let Some(index) = streams.iter().position(|stream| stream.id == id) {
                let stream = streams.swap_remove(index);
                finish(stream, FinishReason::Stopped);
            }
        }
        Command::Redirect {
            id,
            destination,
            codec,
            payload_type,
        } => {
            if let Some(stream) = streams.iter_mut().find(|stream| stream.id == id) {
                stream.prompt.destination = destination;
                stream.prompt.codec = codec;
                stream.prompt.payload_type = payload_type;
            }
        }
    }
}

/// Sends one packet of `stream`; returns whether the stream has finished.
fn send_next(
    stream: &mut Stream,
    payload: &mut [u8],
    out: &mut Vec<u8>,
    statistics: &mut PlayerStatistics,
    measure: bool,
) -> bool {
    let prompt = &mut stream.prompt;
    let audio = &prompt.audio;
    let end = (stream.position + payload.len()).min(audio.len());
    let chunk = &audio[stream.position..end];
    match prompt.codec {
        Codec::Pcmu => {
            payload[..chunk.len()].copy_from_slice(chunk);
        }
        Codec::Pcma => {
            codec::ulaw_to_alaw(chunk, &mut payload[..chunk.len()]);
        }
    }
    // The last packet of the audio is padded with silence to a whole 20 ms.
    payload[chunk.len()..].fill(prompt.codec.silence());
    let header = prompt
        .sender
        .stamp(prompt.payload_type, SAMPLES_PER_PACKET, payload.len());
    let length = packet::write(&header, payload, out);
    match prompt.socket.send_to(&out[..length], prompt.destination) {
        Ok(_) => {
            stream.packets_sent += 1;
            statistics.packets_sent += 1;
        }
        Err(_) => {
            stream.send_failures += 1;
            statistics.send_failures += 1;
        }
    }
    if measure {
        let now = Instant::now();
        if let Some(last) = stream.last_sent.replace(now) {
            statistics.send_intervals.record(now - last);
        }
    }
    stream.position = end;
    if stream.position < audio.len() {
        return false;
    }
    stream.position = 0;
    match &mut stream.loops_left {
        None => false,
        Some(left) => {
            *left = left.saturating_sub(1);
            *left == 0
        }
    }
}

fn finish(stream: Stream, reason: FinishReason) {
    let _ = stream.finished.send(Finished {
        reason,
        packets_sent: stream.packets_sent,
        send_failures: stream.send_failures,
        sender: stream.prompt.sender,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_are_bucket_upper_bounds() {
        let mut histogram = IntervalHistogram::default();
        for micros in [19_995u64, 20_000, 20_004, 20_500] {
            histogram.record(Duration::from_micros(micros));
        }
        assert_eq!(histogram.count(), 4);
        assert_eq!(histogram.quantile(0.5), Duration::from_micros(20_010));
        assert_eq!(histogram.quantile(1.0), Duration::from_micros(20_510));
        histogram.record(Duration::from_secs(5));
        assert_eq!(histogram.quantile(1.0), Duration::from_micros(200_000));
    }
}
