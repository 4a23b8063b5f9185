//! The prompt cache: turns a prompt URL into 8 kHz µ-law kept on disk under a persistent id.
//!
//! `get_or_fetch(url)` answers from the cache while the entry is fresh (RFC 9111 §4.2),
//! revalidates it with a conditional GET when it is stale (§4.3), or fetches, transcodes
//! ([`crate::to_telephony`]) and stores it. Concurrent requests for one URL share one origin
//! fetch (single flight). The id is derived from the URL, so a refresh or a 304 keeps the address
//! `/v1/media/{id}` valid; the strong ETag is derived from the processed bytes.
//!
//! `get_or_synthesize(text, voice, language)` does the same for `<Say>`: a [`Synthesizer`]
//! (espeak-ng by default) speaks the text, the WAV goes through the same pipeline, and the
//! entry, keyed by the resolved voice and the text, never expires (synthesis is
//! deterministic) but is evicted like any other.
//!
//! Code map: [`address`] (outbound-address policy), `freshness` (RFC 9111 arithmetic, no
//! I/O), `fetch` (the conditional GET and its redirects, over [`crate::outbound`]), [`speech`] (text to speech, voice
//! mapping), `store` (files and index on disk).
//!
//! Invariant: every change to the set of `<id>.ulaw` names (rename in, unlink on eviction)
//! happens under the state lock together with the in-memory index, so the index never names a
//! file that is gone and eviction never unlinks a file that a refresh just installed.
//! Invariant: a std `Mutex` here never spans an `.await`.

pub mod address;
mod error;
mod fetch;
mod freshness;
pub mod speech;
mod store;

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::future::Future;
use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use reqwest::header::{self, HeaderMap};
use reqwest::Url;
use sha2::{Digest, Sha256};
use tokio::sync::{watch, Semaphore};

pub use address::{AddressPolicy, Refusal};
pub use error::CacheError;
pub use speech::{EspeakNg, SpeechError, Synthesizer};

use crate::{to_telephony, Hint, Limits};
use fetch::{Fetched, Fetcher, Validators};
use freshness::{Directives, ResponseTimes};
use store::{OriginHeaders, Record, Store};

/// Configuration of the prompt cache (`[media]` in the config file: `cache_dir`,
/// `cache_max_bytes`; the rest has defaults).
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// Directory for `<id>.ulaw` files and `index.json`; created if missing. Only files with
    /// those shapes (and `.tmp-*`) are ever removed from it.
    pub cache_dir: PathBuf,
    /// Byte budget for stored entries; least recently used entries are evicted beyond it.
    pub max_bytes: u64,
    /// The largest origin body accepted, in bytes (default 20 MiB).
    pub max_body_bytes: usize,
    /// Connect timeout per connection (default 5 s).
    pub connect_timeout: Duration,
    /// Bound on one whole origin fetch, redirects and body included (default 15 s).
    pub total_timeout: Duration,
    /// Redirects followed at most (default 3).
    pub max_redirects: usize,
    /// Outbound-address policy (default: private and loopback allowed, see [`AddressPolicy`];
    /// link-local and metadata addresses are always refused).
    pub policy: AddressPolicy,
    /// Cap on the heuristic freshness lifetime of RFC 9111 §4.2.2 (default 1 day).
    pub heuristic_max: Duration,
    /// Decoding limits for fetched audio.
    pub limits: Limits,
    /// The text-to-speech backend for `get_or_synthesize` (default [`EspeakNg`]).
    pub synthesizer: Arc<dyn Synthesizer>,
    /// Bound on one synthesis; the backend is dropped (its process killed) after it
    /// (default 10 s).
    pub synthesis_timeout: Duration,
    /// Syntheses run at once at most; further ones wait (default 2, one per core of the
    /// reference machine: espeak-ng is CPU-bound).
    pub max_concurrent_syntheses: usize,
}

impl CacheConfig {
    /// A configuration with the defaults above.
    pub fn new(cache_dir: impl Into<PathBuf>, max_bytes: u64) -> CacheConfig {
        CacheConfig {
            cache_dir: cache_dir.into(),
            max_bytes,
            max_body_bytes: 20 << 20,
            connect_timeout: Duration::from_secs(5),
            total_timeout: Duration::from_secs(15),
            max_redirects: 3,
            policy: AddressPolicy {
                allow_private: true,
                allow_loopback: true,
            },
            heuristic_max: Duration::from_secs(24 * 60 * 60),
            limits: Limits::default(),
            synthesizer: Arc::new(EspeakNg::default()),
            synthesis_timeout: Duration::from_secs(10),
            max_concurrent_syntheses: 2,
        }
    }
}

/// The wall clock the cache reads (HTTP dates are wall-clock time); tests substitute their own.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// [`Clock`] reading [`SystemTime::now`].
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// How a request was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// From a fresh stored entry, without contacting the origin.
    Hit,
    /// Fetched from the origin (or synthesized) and transcoded.
    Miss,
    /// The stored entry was stale; the origin answered 304 and the entry (and its id) was kept.
    Revalidated,
    /// The stored entry was stale and the origin failed; served under `stale-if-error`
    /// (RFC 5861 §4).
    Stale,
}

/// A prompt ready to be played.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The persistent id: the address is `/v1/media/{id}`.
    pub id: String,
    /// Playing time.
    pub duration: Duration,
    /// Size of the µ-law bytes (one byte per 8 kHz sample).
    pub size: u64,
    /// Strong ETag over the µ-law bytes, quoted (`"…"`).
    pub etag: String,
    /// How the request was answered.
    pub outcome: Outcome,
}

/// The processed audio of an entry: 8 kHz µ-law bytes and their strong ETag.
#[derive(Debug, Clone)]
pub struct Media {
    /// The µ-law bytes.
    pub bytes: Bytes,
    /// Strong ETag, quoted.
    pub etag: String,
}

/// Counters since start (and the current stored size).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Metrics {
    /// Requests answered from a fresh entry.
    pub hits: u64,
    /// Origin fetches that produced a new entry.
    pub misses: u64,
    /// Stale entries confirmed by a 304.
    pub revalidations: u64,
    /// Stale entries served because the origin failed (`stale-if-error`).
    pub stale_served: u64,
    /// Entries evicted to stay within the byte budget.
    pub evictions: u64,
    /// Origin fetches that ended in an error.
    pub fetch_errors: u64,
    /// Syntheses that ended in an error (requests refused before synthesis not counted).
    pub synthesis_errors: u64,
    /// Bytes currently stored.
    pub bytes_stored: u64,
    /// Entries currently stored.
    pub entries: u64,
}

/// The prompt cache. Cheap to share: hold it in an `Arc`.
pub struct Cache {
    config: CacheConfig,
    clock: Arc<dyn Clock>,
    fetcher: Fetcher,
    store: Store,
    state: Mutex<State>,
    /// Serialises index writes so an older snapshot never overwrites a newer one.
    index_writer: Mutex<()>,
    /// Single flight: id → the one in-progress refresh every caller awaits.
    flights: Mutex<HashMap<String, Flight>>,
    /// Bounds concurrent syntheses (`max_concurrent_syntheses`).
    synthesis_permits: Semaphore,
    counters: Counters,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Cache")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Longest URL accepted; longer ones are refused as invalid.
const MAX_URL_LENGTH: usize = 8 * 1024;
/// How long a response that must not be stored (`no-store`, `private`, larger than the
/// budget) stays available for its single use.
const TRANSIENT_GRACE: Duration = Duration::from_secs(60);
/// How many such responses are held at once; the oldest goes first.
const MAX_TRANSIENT: usize = 16;

impl Cache {
    /// Opens (or creates) the cache in `config.cache_dir` with the system clock.
    pub fn new(config: CacheConfig) -> Result<Arc<Cache>, CacheError> {
        Cache::with_clock(config, Arc::new(SystemClock))
    }

    /// Opens (or creates) the cache with `clock` as the source of "now". Entries whose file is
    /// missing are dropped and stray files removed.
    pub fn with_clock(
        config: CacheConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Cache>, CacheError> {
        let store = Store::new(config.cache_dir.clone());
        let (records, changed) = store.load().map_err(CacheError::storage)?;
        let total_bytes = records.values().map(|record| record.size).sum();
        let use_counter = records
            .values()
            .map(|record| record.last_use)
            .max()
            .unwrap_or(0);
        if changed {
            store
                .write_index(records.clone())
                .map_err(CacheError::storage)?;
        }
        let fetcher = Fetcher {
            clients: crate::outbound::ClientPool::new(
                config.policy,
                config.connect_timeout,
                fetch::USER_AGENT,
            ),
            connect_timeout: config.connect_timeout,
            max_redirects: config.max_redirects,
            max_body_bytes: config.max_body_bytes,
        };
        let cache = Cache {
            fetcher,
            store,
            clock,
            state: Mutex::new(State {
                records,
                total_bytes,
                use_counter,
                transient: VecDeque::new(),
            }),
            index_writer: Mutex::new(()),
            flights: Mutex::new(HashMap::new()),
            synthesis_permits: Semaphore::new(config.max_concurrent_syntheses.max(1)),
            counters: Counters::default(),
            config,
        };
        // A budget lowered since the last run applies at once.
        {
            let mut state = lock(&cache.state);
            cache.evict_over_budget(&mut state, None);
        }
        Ok(Arc::new(cache))
    }

    /// The entry for `url`: fresh from the cache, revalidated, or fetched and transcoded now.
    pub async fn get_or_fetch(self: &Arc<Self>, url: &str) -> Result<Entry, CacheError> {
        let url = normalize(url)?;
        let id = id_for(&url);
        if let Some(entry) = self.lookup_fresh(&id, self.clock.now()) {
            return Ok(entry);
        }
        self.single_flight(id, move |cache, id| cache.refresh(url, id))
            .await
    }

    /// The entry for speaking `text` with the Twilio-style `voice` and `language` (see
    /// [`speech::resolve_voice`] for the mapping): from the cache, or synthesized and
    /// transcoded now. Invalid text or voice is refused before any process starts.
    pub async fn get_or_synthesize(
        self: &Arc<Self>,
        text: &str,
        voice: Option<&str>,
        language: Option<&str>,
    ) -> Result<Entry, CacheError> {
        let (id, voice) = speech_key(text, voice, language)?;
        if let Some(entry) = self.lookup_fresh(&id, self.clock.now()) {
            return Ok(entry);
        }
        let text = text.to_owned();
        self.single_flight(id, move |cache, id| cache.synthesize(text, voice, id))
            .await
    }

    /// The id `text` spoken with `voice` in `language` is (or would be) cached under.
    pub fn id_for_speech(
        text: &str,
        voice: Option<&str>,
        language: Option<&str>,
    ) -> Result<String, CacheError> {
        speech_key(text, voice, language).map(|(id, _)| id)
    }

    /// The processed audio of entry `id`, or `None` if no such entry is cached. A response
    /// that could not be stored (`no-store`, too large) is served by this once.
    pub async fn open(&self, id: &str) -> Result<Option<Media>, CacheError> {
        if !store::is_id(id) {
            return Ok(None);
        }
        let opened = {
            let mut guard = lock(&self.state);
            let state = &mut *guard;
            state.use_counter += 1;
            if let Some(record) = state.records.get_mut(id) {
                record.last_use = state.use_counter;
                // Opened under the lock: eviction cannot unlink the name in between, and once
                // open the inode stays readable whatever happens to the name.
                let file = File::open(self.store.entry_path(id)).map_err(CacheError::storage)?;
                (file, record.etag.clone())
            } else {
                let now = self.clock.now();
                state.transient.retain(|transient| transient.expires > now);
                let position = state
                    .transient
                    .iter()
                    .position(|transient| transient.id == id);
                return Ok(position
                    .and_then(|position| state.transient.remove(position))
                    .map(|transient| Media {
                        bytes: transient.bytes,
                        etag: transient.etag,
                    }));
            }
        };
        let (mut file, etag) = opened;
        let bytes = tokio::task::spawn_blocking(move || {
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes).map(|_| bytes)
        })
        .await
        .map_err(|_| CacheError::FetchTaskFailed)?
        .map_err(CacheError::storage)?;
        Ok(Some(Media {
            bytes: Bytes::from(bytes),
            etag,
        }))
    }

    /// A snapshot of the counters.
    pub fn metrics(&self) -> Metrics {
        let (bytes_stored, entries) = {
            let state = lock(&self.state);
            (state.total_bytes, state.records.len() as u64)
        };
        let counters = &self.counters;
        Metrics {
            hits: counters.hits.load(Ordering::Relaxed),
            misses: counters.misses.load(Ordering::Relaxed),
            revalidations: counters.revalidations.load(Ordering::Relaxed),
            stale_served: counters.stale_served.load(Ordering::Relaxed),
            evictions: counters.evictions.load(Ordering::Relaxed),
            fetch_errors: counters.fetch_errors.load(Ordering::Relaxed),
            synthesis_errors: counters.synthesis_errors.load(Ordering::Relaxed),
            bytes_stored,
            entries,
        }
    }

    /// The id `url` is (or would be) cached under.
    pub fn id_for_url(url: &str) -> Result<String, CacheError> {
        normalize(url).map(|url| id_for(&url))
    }
}

/// One in-progress refresh, shared by every caller waiting for the same id: `None` until the
/// refresh task answers.
type Flight = watch::Receiver<Option<Result<Entry, CacheError>>>;

/// Unregisters a flight when its refresh task ends, also if it panics.
struct FlightGuard {
    cache: Arc<Cache>,
    id: String,
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        lock(&self.cache.flights).remove(&self.id);
    }
}

struct State {
    records: HashMap<String, Record>,
    total_bytes: u64,
    use_counter: u64,
    transient: VecDeque<Transient>,
}

/// A response held in memory only, for one use.
struct Transient {
    id: String,
    bytes: Bytes,
    etag: String,
    expires: SystemTime,
}

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    revalidations: AtomicU64,
    stale_served: AtomicU64,
    evictions: AtomicU64,
    fetch_errors: AtomicU64,
    synthesis_errors: AtomicU64,
}

impl Cache {
    /// Runs `work` for `id` as the one flight every concurrent caller for `id` awaits.
    async fn single_flight<Work, Running>(
        self: &Arc<Self>,
        id: String,
        work: Work,
    ) -> Result<Entry, CacheError>
    where
        Work: FnOnce(Arc<Cache>, String) -> Running + Send + 'static,
        Running: Future<Output = Result<Entry, CacheError>> + Send + 'static,
    {
        let mut flight = {
            let mut flights = lock(&self.flights);
            match flights.get(&id) {
                Some(flight) => flight.clone(),
                None => {
                    let (sender, flight) = watch::channel(None);
                    flights.insert(id.clone(), flight.clone());
                    let guard = FlightGuard {
                        cache: Arc::clone(self),
                        id: id.clone(),
                    };
                    // The work runs in its own task, so a caller that goes away (an HTTP
                    // client disconnecting) neither aborts a download, a synthesis or a write
                    // half-way nor makes another caller start a second one.
                    tokio::spawn(async move {
                        let result = work(guard.cache.clone(), guard.id.clone()).await;
                        // Unregister before announcing: a later caller starts a new flight
                        // (which finds the fresh entry) instead of reusing this answer.
                        drop(guard);
                        let _ = sender.send(Some(result));
                    });
                    flight
                }
            }
        };
        let answer = flight
            .wait_for(Option::is_some)
            .await
            .map(|answer| answer.clone());
        // The sender only goes away without an answer if the refresh task panicked.
        answer
            .ok()
            .flatten()
            .unwrap_or(Err(CacheError::FetchTaskFailed))
    }

    /// A hit if `id` is stored and fresh at `now` (RFC 9111 §4.2); marks it used.
    fn lookup_fresh(&self, id: &str, now: SystemTime) -> Option<Entry> {
        let mut guard = lock(&self.state);
        let state = &mut *guard;
        let record = state.records.get_mut(id)?;
        if !is_fresh(record, now) {
            return None;
        }
        state.use_counter += 1;
        record.last_use = state.use_counter;
        self.counters.hits.fetch_add(1, Ordering::Relaxed);
        Some(entry(id, record, Outcome::Hit))
    }

    /// The body of one flight: revalidate or fetch `url`, store the result.
    async fn refresh(self: Arc<Self>, url: Url, id: String) -> Result<Entry, CacheError> {
        let request_time = self.clock.now();
        // Another flight may have finished between our look-up and this one starting.
        if let Some(entry) = self.lookup_fresh(&id, request_time) {
            return Ok(entry);
        }
        let existing = lock(&self.state).records.get(&id).cloned();
        let validators = existing
            .as_ref()
            .map(|record| Validators {
                etag: record.origin.etag.clone(),
                last_modified: record.origin.last_modified.clone(),
            })
            .unwrap_or_default();
        let result = match self.fetch(&url, &validators).await {
            Ok(Fetched::NotModified { headers }) => match &existing {
                Some(record) => {
                    self.revalidated(&url, &id, record, &headers, request_time)
                        .await
                }
                None => Err(CacheError::OriginStatus { status: 304 }),
            },
            Ok(Fetched::Body {
                headers,
                body,
                final_url,
            }) => {
                self.store_response(&url, &id, &headers, body, &final_url, request_time)
                    .await
            }
            Err(error) => Err(error),
        };
        let Err(error) = result else { return result };
        self.counters.fetch_errors.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(url = %url, %error, "media fetch failed");
        // RFC 5861 §4: stale-if-error lets a stale entry stand in when the origin fails,
        // unless a directive forbids serving stale (RFC 9111 §4.2.4).
        if let Some(record) = existing.filter(|_| error.is_origin_failure()) {
            let window = record.directives.stale_if_error.unwrap_or(Duration::ZERO);
            let age =
                freshness::current_age(record.initial_age, record.response_time, self.clock.now());
            let forbidden = record.directives.no_cache || record.directives.must_revalidate;
            if !forbidden
                && age <= record.lifetime + window
                && lock(&self.state).records.contains_key(&id)
            {
                self.counters.stale_served.fetch_add(1, Ordering::Relaxed);
                return Ok(entry(&id, &record, Outcome::Stale));
            }
        }
        Err(error)
    }

    /// One origin fetch within the total timeout.
    async fn fetch(&self, url: &Url, validators: &Validators) -> Result<Fetched, CacheError> {
        let limit = self.config.total_timeout;
        tokio::time::timeout(limit, self.fetcher.fetch(url, validators))
            .await
            .unwrap_or(Err(CacheError::Timeout { limit }))
    }

    /// A 304: RFC 9111 §4.3.4 — update the stored headers with those the 304 carries and
    /// recompute freshness; the bytes, the id and the ETag stay.
    async fn revalidated(
        self: &Arc<Self>,
        url: &Url,
        id: &str,
        stored: &Record,
        headers: &HeaderMap,
        request_time: SystemTime,
    ) -> Result<Entry, CacheError> {
        let response_time = self.clock.now();
        let mut origin = stored.origin.clone();
        let received = origin_headers(headers);
        origin.cache_control = received.cache_control.or(origin.cache_control);
        origin.expires = received.expires.or(origin.expires);
        origin.last_modified = received.last_modified.or(origin.last_modified);
        origin.etag = received.etag.or(origin.etag);
        let (directives, lifetime, initial_age) =
            self.freshness(&origin, headers, request_time, response_time);
        let updated = {
            let mut state = lock(&self.state);
            match state.records.get_mut(id) {
                Some(record) => {
                    record.origin = origin;
                    record.directives = directives;
                    record.lifetime = lifetime;
                    record.initial_age = initial_age;
                    record.response_time = response_time;
                    Some(entry(id, record, Outcome::Revalidated))
                }
                None => None,
            }
        };
        let Some(entry) = updated else {
            // Evicted while we revalidated: the bytes are gone, so fetch them afresh.
            return match self.fetch(url, &Validators::default()).await? {
                Fetched::Body {
                    headers,
                    body,
                    final_url,
                } => {
                    self.store_response(url, id, &headers, body, &final_url, request_time)
                        .await
                }
                Fetched::NotModified { .. } => Err(CacheError::OriginStatus { status: 304 }),
            };
        };
        self.counters.revalidations.fetch_add(1, Ordering::Relaxed);
        self.persist_index().await?;
        Ok(entry)
    }

    /// A 200: check the media type, transcode, and store (or hold for one use).
    async fn store_response(
        self: &Arc<Self>,
        url: &Url,
        id: &str,
        headers: &HeaderMap,
        body: Vec<u8>,
        final_url: &Url,
        request_time: SystemTime,
    ) -> Result<Entry, CacheError> {
        let response_time = self.clock.now();
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
        if !is_audio_type(content_type.as_deref()) {
            let mut content_type = content_type.unwrap_or_default();
            content_type.truncate(
                content_type
                    .char_indices()
                    .nth(100)
                    .map_or(content_type.len(), |(index, _)| index),
            );
            return Err(CacheError::NotAudio { content_type });
        }
        let extension = final_url
            .path_segments()
            .and_then(|mut segments| segments.next_back())
            .and_then(|name| name.rsplit_once('.'))
            .map(|(_, extension)| extension.to_owned());
        let limits = self.config.limits;
        let telephony = tokio::task::spawn_blocking(move || {
            let hint = Hint {
                content_type: content_type.as_deref(),
                extension: extension.as_deref(),
            };
            to_telephony(&body, &hint, &limits)
        })
        .await
        .map_err(|_| CacheError::FetchTaskFailed)?
        .map_err(|error| CacheError::Undecodable(Arc::new(error)))?;
        let bytes = Bytes::from(telephony.ulaw);
        let etag = strong_etag(&bytes);
        let origin = origin_headers(headers);
        let (directives, lifetime, initial_age) =
            self.freshness(&origin, headers, request_time, response_time);
        self.counters.misses.fetch_add(1, Ordering::Relaxed);
        let record = Record {
            url: url.as_str().to_owned(),
            synthesized: false,
            size: bytes.len() as u64,
            duration: telephony.duration,
            etag,
            origin,
            response_time,
            initial_age,
            lifetime,
            directives,
            last_use: 0,
        };
        let result = entry(id, &record, Outcome::Miss);
        // RFC 9111 §3 and §3.5: a shared cache stores neither `no-store` nor `private`
        // responses; an entry larger than the whole budget is not kept either. The caller still
        // gets the audio, once, from memory.
        if !directives.is_storable() || record.size > self.config.max_bytes {
            self.hold_transient(id, bytes, record.etag, response_time)
                .await?;
            return Ok(result);
        }
        self.install_in_background(id, bytes, record).await?;
        Ok(result)
    }

    /// The body of one speech flight: synthesize (bounded in time and concurrency), transcode
    /// and store. `voice` is already resolved and validated.
    async fn synthesize(
        self: Arc<Self>,
        text: String,
        voice: String,
        id: String,
    ) -> Result<Entry, CacheError> {
        // Another flight may have finished between our look-up and this one starting.
        if let Some(entry) = self.lookup_fresh(&id, self.clock.now()) {
            return Ok(entry);
        }
        let result = self.synthesize_and_store(&text, &voice, &id).await;
        if let Err(error) = &result {
            self.counters
                .synthesis_errors
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%voice, %error, "speech synthesis failed");
        }
        result
    }

    async fn synthesize_and_store(
        self: &Arc<Self>,
        text: &str,
        voice: &str,
        id: &str,
    ) -> Result<Entry, CacheError> {
        let wav = {
            let _permit = self
                .synthesis_permits
                .acquire()
                .await
                .map_err(|_| CacheError::FetchTaskFailed)?;
            let limit = self.config.synthesis_timeout;
            // Dropping the synthesis on timeout drops (and so kills) the backend process.
            tokio::time::timeout(limit, self.config.synthesizer.synthesize(text, voice))
                .await
                .unwrap_or(Err(SpeechError::Timeout { limit }))
                .map_err(CacheError::Speech)?
        };
        let limits = self.config.limits;
        let telephony = tokio::task::spawn_blocking(move || {
            let hint = Hint {
                content_type: Some("audio/wav"),
                extension: Some("wav"),
            };
            to_telephony(&wav, &hint, &limits)
        })
        .await
        .map_err(|_| CacheError::FetchTaskFailed)?
        .map_err(|error| CacheError::Undecodable(Arc::new(error)))?;
        if telephony.ulaw.is_empty() {
            return Err(CacheError::Speech(SpeechError::EmptyOutput));
        }
        let bytes = Bytes::from(telephony.ulaw);
        let etag = strong_etag(&bytes);
        let now = self.clock.now();
        self.counters.misses.fetch_add(1, Ordering::Relaxed);
        let record = Record {
            url: String::new(),
            synthesized: true,
            size: bytes.len() as u64,
            duration: telephony.duration,
            etag,
            origin: OriginHeaders::default(),
            response_time: now,
            initial_age: Duration::ZERO,
            lifetime: Duration::ZERO,
            directives: Directives::default(),
            last_use: 0,
        };
        let result = entry(id, &record, Outcome::Miss);
        if record.size > self.config.max_bytes {
            // Larger than the whole budget: answered, and served once from memory.
            self.hold_transient(id, bytes, record.etag, now).await?;
            return Ok(result);
        }
        self.install_in_background(id, bytes, record).await?;
        Ok(result)
    }

    /// Keeps audio that is not stored in memory for one `open` within the grace period, and
    /// drops any stored entry under the same id.
    async fn hold_transient(
        self: &Arc<Self>,
        id: &str,
        bytes: Bytes,
        etag: String,
        now: SystemTime,
    ) -> Result<(), CacheError> {
        let removed = {
            let mut state = lock(&self.state);
            state.transient.retain(|transient| transient.id != id);
            if state.transient.len() == MAX_TRANSIENT {
                state.transient.pop_front();
            }
            state.transient.push_back(Transient {
                id: id.to_owned(),
                bytes,
                etag,
                expires: now + TRANSIENT_GRACE,
            });
            self.remove_record(&mut state, id)
        };
        if removed {
            self.persist_index().await?;
        }
        Ok(())
    }

    /// [`Cache::install`] on the blocking pool.
    async fn install_in_background(
        self: &Arc<Self>,
        id: &str,
        bytes: Bytes,
        record: Record,
    ) -> Result<(), CacheError> {
        let cache = Arc::clone(self);
        let id = id.to_owned();
        tokio::task::spawn_blocking(move || cache.install(&id, &bytes, record))
            .await
            .map_err(|_| CacheError::FetchTaskFailed)?
    }

    /// Blocking: writes the file, renames it in, updates the index and evicts over budget.
    fn install(&self, id: &str, bytes: &[u8], mut record: Record) -> Result<(), CacheError> {
        let temporary = self
            .store
            .write_temporary(bytes)
            .map_err(CacheError::storage)?;
        {
            let mut guard = lock(&self.state);
            let state = &mut *guard;
            self.store
                .install(temporary, id)
                .map_err(CacheError::storage)?;
            state.use_counter += 1;
            record.last_use = state.use_counter;
            state.total_bytes += record.size;
            if let Some(old) = state.records.insert(id.to_owned(), record) {
                state.total_bytes -= old.size;
            }
            state.transient.retain(|transient| transient.id != id);
            self.evict_over_budget(state, Some(id));
        }
        self.store.sync_directory().map_err(CacheError::storage)?;
        self.write_index()
    }

    /// Evicts least recently used entries (never `keep`) until the budget holds.
    fn evict_over_budget(&self, state: &mut State, keep: Option<&str>) {
        while state.total_bytes > self.config.max_bytes {
            let victim = state
                .records
                .iter()
                .filter(|(id, _)| Some(id.as_str()) != keep)
                .min_by_key(|(_, record)| record.last_use)
                .map(|(id, _)| id.clone());
            let Some(victim) = victim else { break };
            self.remove_record(state, &victim);
            self.counters.evictions.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Removes entry `id` and its file; whether there was one.
    fn remove_record(&self, state: &mut State, id: &str) -> bool {
        let Some(record) = state.records.remove(id) else {
            return false;
        };
        state.total_bytes -= record.size;
        if let Err(error) = self.store.remove(id) {
            // The index no longer names it; the next start removes the stray file.
            tracing::warn!(%error, id, "could not remove evicted media file");
        }
        true
    }

    async fn persist_index(self: &Arc<Self>) -> Result<(), CacheError> {
        let cache = Arc::clone(self);
        tokio::task::spawn_blocking(move || cache.write_index())
            .await
            .map_err(|_| CacheError::FetchTaskFailed)?
    }

    /// Blocking: writes the current index. The snapshot is taken under the writer lock, so the
    /// last write always carries the newest state.
    fn write_index(&self) -> Result<(), CacheError> {
        let _writer = lock(&self.index_writer);
        let snapshot = lock(&self.state).records.clone();
        self.store
            .write_index(snapshot)
            .map_err(CacheError::storage)
    }

    /// Directives, freshness lifetime and initial age of a response with `origin` headers.
    fn freshness(
        &self,
        origin: &OriginHeaders,
        headers: &HeaderMap,
        request_time: SystemTime,
        response_time: SystemTime,
    ) -> (Directives, Duration, Duration) {
        let directives = Directives::parse(origin.cache_control.as_deref());
        let text =
            |name: header::HeaderName| headers.get(name).and_then(|value| value.to_str().ok());
        let times = ResponseTimes {
            date: text(header::DATE).and_then(freshness::parse_http_date),
            // RFC 9111 §5.3: an invalid Expires means "already expired".
            expires: origin
                .expires
                .as_deref()
                .map(|value| freshness::parse_http_date(value).unwrap_or(SystemTime::UNIX_EPOCH)),
            last_modified: origin
                .last_modified
                .as_deref()
                .and_then(freshness::parse_http_date),
            age: text(header::AGE)
                .and_then(|value| value.trim().parse::<u64>().ok())
                .map(Duration::from_secs),
        };
        let lifetime = freshness::lifetime(
            &directives,
            &times,
            response_time,
            self.config.heuristic_max,
        );
        let initial_age = freshness::initial_age(&times, request_time, response_time);
        (directives, lifetime, initial_age)
    }
}

fn is_fresh(record: &Record, now: SystemTime) -> bool {
    if record.synthesized {
        return true;
    }
    // RFC 9111 §5.2.2.4: no-cache means a stored response is never used without validation.
    !record.directives.no_cache
        && freshness::current_age(record.initial_age, record.response_time, now) < record.lifetime
}

fn entry(id: &str, record: &Record, outcome: Outcome) -> Entry {
    Entry {
        id: id.to_owned(),
        duration: record.duration,
        size: record.size,
        etag: record.etag.clone(),
        outcome,
    }
}

/// The origin headers we keep; several `Cache-Control` fields combine into one list.
fn origin_headers(headers: &HeaderMap) -> OriginHeaders {
    let text = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    let cache_control: Vec<&str> = headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .collect();
    OriginHeaders {
        cache_control: (!cache_control.is_empty()).then(|| cache_control.join(", ")),
        expires: text(header::EXPIRES),
        last_modified: text(header::LAST_MODIFIED),
        etag: text(header::ETAG),
    }
}

/// Audio, a generic binary type, or no type at all (then the bytes are sniffed); anything
/// else (an HTML error page served with 200) is refused before decoding.
fn is_audio_type(content_type: Option<&str>) -> bool {
    let Some(content_type) = content_type else {
        return true;
    };
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence.starts_with("audio/")
        || matches!(
            essence.as_str(),
            "application/octet-stream" | "binary/octet-stream" | ""
        )
}

/// Parses and normalises a URL (the `url` crate lower-cases scheme and host, drops a default
/// port and percent-encodes); the fragment is dropped as it never reaches the origin.
fn normalize(text: &str) -> Result<Url, CacheError> {
    if text.len() > MAX_URL_LENGTH {
        return Err(CacheError::InvalidUrl);
    }
    let mut url = Url::parse(text.trim()).map_err(|_| CacheError::InvalidUrl)?;
    crate::outbound::check_url(&url)?;
    url.set_fragment(None);
    Ok(url)
}

/// The id: the first 128 bits of SHA-256 over the normalised URL, in hex.
fn id_for(url: &Url) -> String {
    let digest = Sha256::digest(url.as_str().as_bytes());
    hex::encode(&digest[..16])
}

/// Validates a speech request and derives its id: the first 128 bits of SHA-256 over a
/// length-prefixed encoding of the resolved voice and the text, after a tag starting with NUL
/// (which no URL contains, so speech ids and URL ids never collide). Returns the id and the
/// resolved voice.
fn speech_key(
    text: &str,
    voice: Option<&str>,
    language: Option<&str>,
) -> Result<(String, String), CacheError> {
    speech::validate_text(text).map_err(CacheError::Speech)?;
    let voice = speech::resolve_voice(voice, language).map_err(CacheError::Speech)?;
    let mut hasher = Sha256::new();
    hasher.update(b"\0say/1\0");
    for part in [voice.as_bytes(), text.as_bytes()] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    Ok((hex::encode(&hasher.finalize()[..16]), voice))
}

/// A strong ETag (RFC 9110 §8.8.3): the first 128 bits of SHA-256 over the bytes served.
fn strong_etag(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    format!("\"{}\"", hex::encode(&digest[..16]))
}

/// Locks a std mutex; a poisoned lock is taken over, as every update here leaves the state
/// consistent before anything that could panic.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_normalise_to_one_id() {
        let a = Cache::id_for_url("HTTP://Example.COM:80/a.wav#intro").ok();
        let b = Cache::id_for_url("http://example.com/a.wav").ok();
        assert!(a.is_some());
        assert_eq!(a, b);
        assert_ne!(a, Cache::id_for_url("http://example.com/b.wav").ok());
        assert!(a.is_some_and(|id| store::is_id(&id)));
    }

    #[test]
    fn urls_that_are_refused_before_any_fetch() {
        assert!(matches!(
            Cache::id_for_url("ftp://example.com/a.wav"),
            Err(CacheError::UnsupportedScheme)
        ));
        assert!(matches!(
            Cache::id_for_url("file:///etc/passwd"),
            Err(CacheError::UnsupportedScheme)
        ));
        assert!(matches!(
            Cache::id_for_url("/relative.wav"),
            Err(CacheError::InvalidUrl)
        ));
        let long = format!("http://example.com/{}", "a".repeat(MAX_URL_LENGTH));
        assert!(matches!(
            Cache::id_for_url(&long),
            Err(CacheError::InvalidUrl)
        ));
    }

    #[test]
    fn audio_types() {
        assert!(is_audio_type(None));
        assert!(is_audio_type(Some("audio/wav")));
        assert!(is_audio_type(Some("Audio/MPEG; charset=binary")));
        assert!(is_audio_type(Some("application/octet-stream")));
        assert!(!is_audio_type(Some("text/html; charset=utf-8")));
        assert!(!is_audio_type(Some("application/json")));
    }
}
