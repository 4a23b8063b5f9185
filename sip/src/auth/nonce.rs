//! Stateless nonces and bounded replay tracking.
//!
//! A nonce is `hex(issued || random || mac)`: the issue time in milliseconds since the
//! [`NonceKeeper`] was created, 8 random bytes, and the first 16 bytes of HMAC-SHA256 over both,
//! keyed by a 32-byte secret that never leaves the process. Issuing a nonce therefore stores
//! nothing (RFC 7616 §3.3 suggests exactly this: a time stamp and a private key), so
//! unauthenticated peers cannot grow our memory by asking for challenges. Only nonces that carried
//! correct credentials are remembered, to refuse their reuse (RFC 7616 §5.5).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

/// Bound on remembered nonces. Each entry is about 100 bytes, so this caps replay state near 6 MB.
pub(crate) const MAX_TRACKED_NONCES: usize = 65_536;

const MAC_LEN: usize = 16;
const NONCE_LEN: usize = 8 + 8 + MAC_LEN;

/// What a received nonce turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NonceCheck {
    /// Ours and still within its lifetime.
    Fresh {
        /// Milliseconds since the keeper's epoch at which it was issued.
        issued_ms: u64,
    },
    /// Ours, but older than its lifetime (or older than what replay tracking still covers).
    Expired,
    /// Not a nonce we issued (bad length, bad signature, or a time in the future).
    Forged,
}

/// The outcome of recording a use of a nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Use {
    /// First use of this nonce, or an `nc` higher than any seen with it.
    Accepted,
    /// The nonce (without qop) or this `nc` (with qop) was already used.
    Replayed,
    /// Issued too long ago for replay tracking to vouch for it: challenge again.
    Untracked,
}

/// Issues and checks nonces and remembers which were used.
pub(crate) struct NonceKeeper {
    key: [u8; 32],
    epoch: Instant,
    lifetime: Duration,
    /// Nonce -> what has been seen with it.
    used: HashMap<String, Seen>,
    /// Nonces issued at or before this many milliseconds were evicted from `used` to bound its
    /// size, so their use must be refused (as stale) lest a replay go unnoticed.
    evicted_up_to_ms: Option<u64>,
    /// When `used` was last swept of expired nonces.
    last_sweep: Instant,
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    issued_ms: u64,
    /// Highest nc accepted; `None` for a nonce used without qop (usable only once).
    highest_nc: Option<u32>,
}

impl NonceKeeper {
    pub fn new(lifetime: Duration, now: Instant) -> NonceKeeper {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        NonceKeeper {
            key,
            epoch: now,
            lifetime,
            used: HashMap::new(),
            evicted_up_to_ms: None,
            last_sweep: now,
        }
    }

    /// A fresh nonce, valid for the keeper's lifetime from `now`.
    pub fn issue(&self, now: Instant) -> String {
        let issued_ms = self.millis(now);
        let mut random = [0u8; 8];
        rand::rng().fill_bytes(&mut random);
        let mut raw = [0u8; NONCE_LEN];
        raw[..8].copy_from_slice(&issued_ms.to_be_bytes());
        raw[8..16].copy_from_slice(&random);
        let mac = self.sign(&raw[..16]);
        raw[16..].copy_from_slice(&mac);
        hex::encode(raw)
    }

    /// Checks that `nonce` is one of ours and whether it is still fresh.
    pub fn check(&self, nonce: &str, now: Instant) -> NonceCheck {
        let mut raw = [0u8; NONCE_LEN];
        if nonce.len() != NONCE_LEN * 2 || hex::decode_to_slice(nonce, &mut raw).is_err() {
            return NonceCheck::Forged;
        }
        if !super::constant_time_eq(&self.sign(&raw[..16]), &raw[16..]) {
            return NonceCheck::Forged;
        }
        let mut issued = [0u8; 8];
        issued.copy_from_slice(&raw[..8]);
        let issued_ms = u64::from_be_bytes(issued);
        let now_ms = self.millis(now);
        if issued_ms > now_ms {
            return NonceCheck::Forged;
        }
        if Duration::from_millis(now_ms - issued_ms) > self.lifetime {
            return NonceCheck::Expired;
        }
        NonceCheck::Fresh { issued_ms }
    }

    /// Records a use of a fresh nonce: `nc` with qop=auth, `None` without qop.
    pub fn record(&mut self, nonce: &str, issued_ms: u64, nc: Option<u32>, now: Instant) -> Use {
        if self.evicted_up_to_ms.is_some_and(|e| issued_ms <= e) {
            return Use::Untracked;
        }
        if let Some(seen) = self.used.get_mut(nonce) {
            // RFC 7616 §3.4: the nc value lets the server detect replays; it must grow.
            return match (seen.highest_nc, nc) {
                (Some(highest), Some(nc)) if nc > highest => {
                    seen.highest_nc = Some(nc);
                    Use::Accepted
                }
                _ => Use::Replayed,
            };
        }
        self.sweep(now);
        if self.used.len() >= MAX_TRACKED_NONCES {
            self.evict_oldest();
            if self.evicted_up_to_ms.is_some_and(|e| issued_ms <= e) {
                return Use::Untracked;
            }
        }
        self.used.insert(
            nonce.to_owned(),
            Seen {
                issued_ms,
                highest_nc: nc,
            },
        );
        Use::Accepted
    }

    /// Number of nonces currently remembered (for tests and metrics).
    pub fn tracked(&self) -> usize {
        self.used.len()
    }

    fn sign(&self, data: &[u8]) -> [u8; MAC_LEN] {
        #[allow(clippy::expect_used)]
        // Invariant: HMAC accepts keys of any length, so new_from_slice cannot fail.
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(data);
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(&full[..MAC_LEN]);
        out
    }

    fn millis(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    /// Forgets nonces past their lifetime: their use is refused as stale anyway. Runs at most
    /// once per quarter lifetime so that recording stays cheap.
    fn sweep(&mut self, now: Instant) {
        if now.saturating_duration_since(self.last_sweep) < self.lifetime / 4 {
            return;
        }
        self.last_sweep = now;
        let now_ms = self.millis(now);
        let lifetime_ms = u64::try_from(self.lifetime.as_millis()).unwrap_or(u64::MAX);
        self.used
            .retain(|_, seen| now_ms.saturating_sub(seen.issued_ms) <= lifetime_ms);
    }

    /// Makes room by forgetting the oldest nonces, and remembers to refuse them from now on.
    fn evict_oldest(&mut self) {
        let Some(oldest) = self.used.values().map(|s| s.issued_ms).min() else {
            return;
        };
        self.used.retain(|_, seen| seen.issued_ms > oldest);
        self.evicted_up_to_ms = Some(self.evicted_up_to_ms.map_or(oldest, |e| e.max(oldest)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_nonces_check_fresh_then_expire() {
        let start = Instant::now();
        let keeper = NonceKeeper::new(Duration::from_secs(30), start);
        let nonce = keeper.issue(start + Duration::from_secs(1));
        assert!(matches!(
            keeper.check(&nonce, start + Duration::from_secs(31)),
            NonceCheck::Fresh { issued_ms: 1000 }
        ));
        assert_eq!(
            keeper.check(&nonce, start + Duration::from_secs(32)),
            NonceCheck::Expired
        );
    }

    #[test]
    fn tampered_or_foreign_nonces_are_forged() {
        let start = Instant::now();
        let keeper = NonceKeeper::new(Duration::from_secs(30), start);
        let other = NonceKeeper::new(Duration::from_secs(30), start);
        let nonce = keeper.issue(start);
        let mut tampered = nonce.clone().into_bytes();
        tampered[3] = if tampered[3] == b'0' { b'1' } else { b'0' };
        let tampered = String::from_utf8(tampered).unwrap();
        for bad in [
            tampered.as_str(),
            &other.issue(start),
            "",
            "zz",
            &nonce[..nonce.len() - 2],
        ] {
            assert_eq!(keeper.check(bad, start), NonceCheck::Forged, "{bad}");
        }
    }

    #[test]
    fn nc_must_grow_and_qopless_nonces_are_single_use() {
        let start = Instant::now();
        let mut keeper = NonceKeeper::new(Duration::from_secs(30), start);
        assert_eq!(keeper.record("a", 0, Some(1), start), Use::Accepted);
        assert_eq!(keeper.record("a", 0, Some(1), start), Use::Replayed);
        assert_eq!(keeper.record("a", 0, Some(3), start), Use::Accepted);
        assert_eq!(keeper.record("a", 0, Some(2), start), Use::Replayed);
        assert_eq!(keeper.record("b", 0, None, start), Use::Accepted);
        assert_eq!(keeper.record("b", 0, None, start), Use::Replayed);
        assert_eq!(keeper.record("b", 0, Some(5), start), Use::Replayed);
    }

    #[test]
    fn expired_nonces_are_swept() {
        let start = Instant::now();
        let mut keeper = NonceKeeper::new(Duration::from_secs(40), start);
        keeper.record("old", 0, Some(1), start);
        assert_eq!(keeper.tracked(), 1);
        let later = start + Duration::from_secs(50);
        keeper.record("new", 50_000, Some(1), later);
        assert_eq!(keeper.tracked(), 1);
    }

    #[test]
    fn memory_is_bounded_and_evicted_nonces_are_refused() {
        let start = Instant::now();
        let mut keeper = NonceKeeper::new(Duration::from_secs(3600), start);
        for i in 0..MAX_TRACKED_NONCES as u64 {
            assert_eq!(
                keeper.record(&format!("n{i}"), i, Some(1), start),
                Use::Accepted
            );
        }
        assert_eq!(keeper.tracked(), MAX_TRACKED_NONCES);
        let extra = MAX_TRACKED_NONCES as u64;
        assert_eq!(keeper.record("extra", extra, Some(1), start), Use::Accepted);
        assert!(keeper.tracked() <= MAX_TRACKED_NONCES);
        // The evicted oldest nonce cannot be replayed: it is refused as untracked.
        assert_eq!(keeper.record("n0", 0, Some(2), start), Use::Untracked);
        // Newer ones are still tracked.
        assert_eq!(keeper.record("n5", 5, Some(1), start), Use::Replayed);
    }
}
