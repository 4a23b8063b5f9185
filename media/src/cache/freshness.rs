//! RFC 9111 freshness for the prompt cache, without I/O: parsing `Cache-Control`, deciding
//! whether a response may be stored by a shared cache, computing its freshness lifetime and
//! its current age. Time is an argument (`SystemTime`, because HTTP dates are wall-clock).

use std::time::{Duration, SystemTime};

/// The `Cache-Control` directives the prompt cache acts on (RFC 9111 §5.2.2).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Directives {
    /// `max-age=N` (RFC 9111 §5.2.2.1).
    pub max_age: Option<Duration>,
    /// `s-maxage=N`, which wins over `max-age` in a shared cache (RFC 9111 §5.2.2.10).
    pub shared_max_age: Option<Duration>,
    /// `no-cache` (unqualified): store, but revalidate before every use (RFC 9111 §5.2.2.4).
    pub no_cache: bool,
    /// `no-store`: do not keep any part of the response (RFC 9111 §5.2.2.5).
    pub no_store: bool,
    /// `private`: a shared cache must not store it (RFC 9111 §5.2.2.7).
    pub private: bool,
    /// `must-revalidate` / `proxy-revalidate`: no stale use, not even on error
    /// (RFC 9111 §5.2.2.2, §5.2.2.8).
    pub must_revalidate: bool,
    /// `stale-if-error=N` (RFC 5861 §4): how long past expiry a stale entry may be served when
    /// the origin fails.
    pub stale_if_error: Option<Duration>,
}

/// The largest delta-seconds we keep; RFC 9111 §1.2.2 asks caches to treat anything larger as
/// 2^31 seconds, which is also a safe bound for `SystemTime` arithmetic.
const MAX_DELTA_SECONDS: u64 = 1 << 31;

impl Directives {
    /// Parses every `Cache-Control` field value of a response (they combine as one list,
    /// RFC 9110 §5.3). Unknown directives and malformed arguments are ignored, as RFC 9111
    /// §5.2 requires of unrecognised directives.
    pub fn parse<'a>(values: impl IntoIterator<Item = &'a str>) -> Directives {
        let mut directives = Directives::default();
        for value in values {
            for item in value.split(',') {
                let (name, argument) = match item.split_once('=') {
                    Some((name, argument)) => {
                        (name.trim(), Some(argument.trim().trim_matches('"')))
                    }
                    None => (item.trim(), None),
                };
                let seconds = argument.and_then(parse_delta_seconds);
                match name.to_ascii_lowercase().as_str() {
                    "max-age" => directives.max_age = seconds.or(directives.max_age),
                    "s-maxage" => directives.shared_max_age = seconds.or(directives.shared_max_age),
                    // RFC 9111 §5.2.2.4: the qualified form `no-cache="field"` only concerns
                    // the named fields; we store no header fields of the origin, so only the
                    // unqualified form matters.
                    "no-cache" if argument.is_none() => directives.no_cache = true,
                    "no-store" => directives.no_store = true,
                    // RFC 9111 §5.2.2.7: likewise the qualified `private="field"` only bars
                    // storing the named fields.
                    "private" if argument.is_none() => directives.private = true,
                    "must-revalidate" | "proxy-revalidate" => directives.must_revalidate = true,
                    "stale-if-error" => directives.stale_if_error = seconds,
                    _ => {}
                }
            }
        }
        directives
    }

    /// Whether a shared cache may keep the response at all (RFC 9111 §3, §3.5).
    pub fn is_storable(&self) -> bool {
        !self.no_store && !self.private
    }
}

/// RFC 9111 §1.2.2: delta-seconds is `1*DIGIT`; values past 2^31 are capped there.
fn parse_delta_seconds(text: &str) -> Option<Duration> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let seconds = text.parse::<u64>().unwrap_or(MAX_DELTA_SECONDS);
    Some(Duration::from_secs(seconds.min(MAX_DELTA_SECONDS)))
}

/// Parses an HTTP-date (RFC 9110 §5.6.7); an invalid date is treated as absent.
pub fn parse_http_date(text: &str) -> Option<SystemTime> {
    httpdate::parse_http_date(text.trim()).ok()
}

/// The header values of one response that freshness depends on.
#[derive(Debug, Clone, Copy, Default)]
pub struct ResponseTimes {
    /// `Date`.
    pub date: Option<SystemTime>,
    /// `Expires`; `Some(UNIX_EPOCH)` stands for an invalid value, which means "already
    /// expired" (RFC 9111 §5.3).
    pub expires: Option<SystemTime>,
    /// `Last-Modified`.
    pub last_modified: Option<SystemTime>,
    /// `Age`, in seconds (RFC 9111 §5.1).
    pub age: Option<Duration>,
}

/// How long a response stays fresh (RFC 9111 §4.2.1), with `heuristic_cap` bounding the
/// heuristic lifetime of §4.2.2.
///
/// Order: `s-maxage` (we are a shared cache), then `max-age`, then `Expires − Date`, then 10 %
/// of `Date − Last-Modified` capped at `heuristic_cap`, else zero (the entry is kept but
/// revalidated before each use).
pub fn lifetime(
    directives: &Directives,
    times: &ResponseTimes,
    response_time: SystemTime,
    heuristic_cap: Duration,
) -> Duration {
    if let Some(lifetime) = directives.shared_max_age.or(directives.max_age) {
        return lifetime;
    }
    // RFC 9111 §4.2.1: without Date, the time the response was received stands in for it.
    let date = times.date.unwrap_or(response_time);
    if let Some(expires) = times.expires {
        return expires.duration_since(date).unwrap_or(Duration::ZERO);
    }
    // RFC 9111 §4.2.2: a heuristic lifetime is allowed for a 200 without explicit expiry;
    // "10% of the interval since" Last-Modified is the typical choice the RFC names.
    if let Some(last_modified) = times.last_modified {
        let since = date.duration_since(last_modified).unwrap_or(Duration::ZERO);
        return (since / 10).min(heuristic_cap);
    }
    Duration::ZERO
}

/// The age of a response when it was received: RFC 9111 §4.2.3 `corrected_initial_age`.
pub fn initial_age(
    times: &ResponseTimes,
    request_time: SystemTime,
    response_time: SystemTime,
) -> Duration {
    let apparent_age = times
        .date
        .and_then(|date| response_time.duration_since(date).ok())
        .unwrap_or(Duration::ZERO);
    let response_delay = response_time
        .duration_since(request_time)
        .unwrap_or(Duration::ZERO);
    let corrected_age = times.age.unwrap_or(Duration::ZERO) + response_delay;
    apparent_age.max(corrected_age)
}

/// The current age of a stored response (RFC 9111 §4.2.3): its initial age plus the time it
/// has been resident here.
pub fn current_age(initial_age: Duration, response_time: SystemTime, now: SystemTime) -> Duration {
    initial_age + now.duration_since(response_time).unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + seconds)
    }

    #[test]
    fn shared_max_age_wins_over_max_age_in_either_order() {
        let directives = Directives::parse(["max-age=10, s-maxage=99"]);
        assert_eq!(directives.shared_max_age, Some(Duration::from_secs(99)));
        let lifetime = lifetime(&directives, &ResponseTimes::default(), at(0), Duration::MAX);
        assert_eq!(lifetime, Duration::from_secs(99));
        let reversed = Directives::parse(["s-maxage=5", "max-age=60"]);
        assert_eq!(
            super::lifetime(&reversed, &ResponseTimes::default(), at(0), Duration::MAX),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn directive_flags_and_malformed_arguments() {
        let directives =
            Directives::parse([r#"No-Cache, PRIVATE, max-age=abc, stale-if-error="30""#]);
        assert!(directives.no_cache);
        assert!(directives.private);
        assert!(!directives.is_storable());
        assert_eq!(directives.max_age, None);
        assert_eq!(directives.stale_if_error, Some(Duration::from_secs(30)));
        let qualified = Directives::parse([r#"no-cache="set-cookie", private="x""#]);
        assert!(!qualified.no_cache && !qualified.private);
        assert!(Directives::parse(["no-store"]).no_store);
        let huge = Directives::parse(["max-age=99999999999999999999999"]);
        assert_eq!(huge.max_age, Some(Duration::from_secs(MAX_DELTA_SECONDS)));
    }

    #[test]
    fn expires_minus_date_then_heuristic_then_zero() {
        let none = Directives::default();
        let times = ResponseTimes {
            date: Some(at(100)),
            expires: Some(at(160)),
            ..Default::default()
        };
        assert_eq!(
            lifetime(&none, &times, at(100), Duration::MAX),
            Duration::from_secs(60)
        );
        let past = ResponseTimes {
            date: Some(at(100)),
            expires: Some(SystemTime::UNIX_EPOCH),
            ..Default::default()
        };
        assert_eq!(
            lifetime(&none, &past, at(100), Duration::MAX),
            Duration::ZERO
        );
        let modified = ResponseTimes {
            date: Some(at(1_000)),
            last_modified: Some(at(0)),
            ..Default::default()
        };
        assert_eq!(
            lifetime(&none, &modified, at(1_000), Duration::MAX),
            Duration::from_secs(100)
        );
        assert_eq!(
            lifetime(&none, &modified, at(1_000), Duration::from_secs(7)),
            Duration::from_secs(7)
        );
        assert_eq!(
            lifetime(&none, &ResponseTimes::default(), at(0), Duration::MAX),
            Duration::ZERO
        );
    }

    #[test]
    fn ages_follow_rfc_9111_section_4_2_3() {
        let times = ResponseTimes {
            date: Some(at(10)),
            age: Some(Duration::from_secs(3)),
            ..Default::default()
        };
        // Apparent age 20 s beats Age + delay (3 + 1 s).
        assert_eq!(initial_age(&times, at(29), at(30)), Duration::from_secs(20));
        let aged = ResponseTimes {
            date: Some(at(30)),
            age: Some(Duration::from_secs(50)),
            ..Default::default()
        };
        assert_eq!(initial_age(&aged, at(28), at(30)), Duration::from_secs(52));
        assert_eq!(
            current_age(Duration::from_secs(5), at(30), at(40)),
            Duration::from_secs(15)
        );
        assert_eq!(
            current_age(Duration::from_secs(5), at(30), at(20)),
            Duration::from_secs(5)
        );
    }
}
