//! Per-source request rate limiting: a token bucket per source IP for requests that do not
//! come from a trunk. Requests over the limit are dropped without an answer (an answer is what
//! a flood wants: work for us, traffic toward a forged source).
//!
//! Sans-IO: `admit(now, ip)`. Memory is bounded: at most [`MAX_SOURCES`] buckets; idle ones
//! (full again) are swept by housekeeping, and while the table is full every new source shares
//! one overflow bucket, so a flood from forged addresses degrades fairness, never memory.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Source addresses tracked individually at most.
pub const MAX_SOURCES: usize = 16_384;

/// The limit: a sustained rate and the burst allowed above it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Requests per second, sustained.
    pub per_second: f64,
    /// Requests accepted at once from a quiet source.
    pub burst: f64,
}

impl RateLimit {
    /// `per_second` sustained with a burst of twice that (at least 1).
    pub fn per_second(per_second: u32) -> RateLimit {
        RateLimit {
            per_second: f64::from(per_second),
            burst: f64::from(per_second.saturating_mul(2).max(1)),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    refilled_at: Instant,
}

/// The buckets.
#[derive(Debug)]
pub(crate) struct SourceLimiter {
    limit: RateLimit,
    sources: HashMap<IpAddr, Bucket>,
    overflow: Bucket,
}

impl SourceLimiter {
    pub(crate) fn new(limit: RateLimit, now: Instant) -> SourceLimiter {
        SourceLimiter {
            limit,
            sources: HashMap::new(),
            overflow: Bucket {
                tokens: limit.burst,
                refilled_at: now,
            },
        }
    }

    /// Whether one more request from `source` is within the limit.
    pub(crate) fn admit(&mut self, now: Instant, source: IpAddr) -> bool {
        let limit = self.limit;
        let full = self.sources.len() >= MAX_SOURCES;
        let bucket = match self.sources.get_mut(&source) {
            Some(bucket) => bucket,
            None if full => &mut self.overflow,
            None => self.sources.entry(source).or_insert(Bucket {
                tokens: limit.burst,
                refilled_at: now,
            }),
        };
        bucket.refill(now, limit);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Forgets sources whose bucket has refilled: they are indistinguishable from new ones.
    pub(crate) fn sweep(&mut self, now: Instant) {
        let limit = self.limit;
        self.sources.retain(|_, bucket| {
            bucket.refill(now, limit);
            bucket.tokens < limit.burst
        });
    }

    /// Sources tracked now.
    pub(crate) fn len(&self) -> usize {
        self.sources.len()
    }
}

impl Bucket {
    fn refill(&mut self, now: Instant, limit: RateLimit) {
        let elapsed = now
            .saturating_duration_since(self.refilled_at)
            .min(Duration::from_secs(3600));
        self.tokens = (self.tokens + elapsed.as_secs_f64() * limit.per_second).min(limit.burst);
        self.refilled_at = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::from(n.to_be_bytes())
    }

    #[test]
    fn a_burst_then_the_sustained_rate() {
        let start = Instant::now();
        let mut limiter = SourceLimiter::new(RateLimit::per_second(10), start);
        let admitted = (0..100).filter(|_| limiter.admit(start, ip(1))).count();
        assert_eq!(admitted, 20, "the burst is twice the rate");
        // Another source is not affected.
        assert!(limiter.admit(start, ip(2)));
        // A second later, ten more.
        let later = start + Duration::from_secs(1);
        let admitted = (0..100).filter(|_| limiter.admit(later, ip(1))).count();
        assert_eq!(admitted, 10);
    }

    #[test]
    fn idle_sources_are_swept() {
        let start = Instant::now();
        let mut limiter = SourceLimiter::new(RateLimit::per_second(10), start);
        limiter.admit(start, ip(1));
        for _ in 0..30 {
            limiter.admit(start, ip(2));
        }
        assert_eq!(limiter.len(), 2);
        limiter.sweep(start + Duration::from_millis(500));
        assert_eq!(
            limiter.len(),
            1,
            "source 1 refilled, source 2 still limited"
        );
        limiter.sweep(start + Duration::from_secs(10));
        assert_eq!(limiter.len(), 0);
    }

    #[test]
    fn a_forged_address_flood_shares_one_bucket_once_the_table_is_full() {
        let start = Instant::now();
        let mut limiter = SourceLimiter::new(RateLimit::per_second(1), start);
        for n in 0..MAX_SOURCES as u32 {
            assert!(limiter.admit(start, ip(n)));
        }
        assert_eq!(limiter.len(), MAX_SOURCES);
        let newcomers = (0..1000)
            .filter(|n| limiter.admit(start, ip(1_000_000 + n)))
            .count();
        assert_eq!(newcomers, 2, "the overflow bucket's burst, shared");
        assert_eq!(limiter.len(), MAX_SOURCES, "memory stays bounded");
    }
}
