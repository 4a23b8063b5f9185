//! Process-wide logging: a `tracing` subscriber writing human-readable lines or JSON objects to
//! stderr, filtered by `RUST_LOG` (default `info`).
//!
//! Logs go to stderr so that commands whose output is data (`check-config`, later `token`) keep
//! stdout clean.

use serde::{Deserialize, Serialize};
use tracing_subscriber::EnvFilter;

/// The filter used when `RUST_LOG` is unset or empty.
pub const DEFAULT_FILTER: &str = "info";

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One readable line per event (the default).
    #[default]
    Human,
    /// One JSON object per event, for log collectors.
    Json,
}

/// Installs the global subscriber. Calling it again is harmless: the first subscriber stays.
///
/// A `RUST_LOG` that does not parse falls back to [`DEFAULT_FILTER`] and says so in a warning,
/// rather than stopping the process over a logging setting.
pub fn init(format: LogFormat) {
    let requested = std::env::var("RUST_LOG").ok();
    let (filter, rejected) = filter_from(requested.as_deref());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // try_init fails only when a subscriber is already installed, which is fine.
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    if let Some(rejected) = rejected {
        tracing::warn!(rust_log = %rejected, "RUST_LOG does not parse; logging at {DEFAULT_FILTER}");
    }
}

/// The filter for a `RUST_LOG` value, and the value itself when it was rejected.
fn filter_from(requested: Option<&str>) -> (EnvFilter, Option<String>) {
    match requested.map(str::trim).filter(|value| !value.is_empty()) {
        None => (EnvFilter::new(DEFAULT_FILTER), None),
        Some(value) => match EnvFilter::try_new(value) {
            Ok(filter) => (filter, None),
            Err(_) => (EnvFilter::new(DEFAULT_FILTER), Some(value.to_owned())),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_or_empty_rust_log_means_info() {
        for requested in [None, Some(""), Some("   ")] {
            let (filter, rejected) = filter_from(requested);
            assert_eq!(filter.to_string(), DEFAULT_FILTER);
            assert_eq!(rejected, None);
        }
    }

    #[test]
    fn valid_rust_log_is_used() {
        let (filter, rejected) = filter_from(Some("sip=debug,warn"));
        let shown = filter.to_string();
        assert!(shown.contains("sip=debug"), "{shown}");
        assert_eq!(rejected, None);
    }

    #[test]
    fn invalid_rust_log_falls_back_and_is_reported() {
        let (filter, rejected) = filter_from(Some("sip=loud"));
        assert_eq!(filter.to_string(), DEFAULT_FILTER);
        assert_eq!(rejected.as_deref(), Some("sip=loud"));
    }

    #[test]
    fn format_names_match_the_configuration_file() {
        #[derive(Deserialize)]
        struct Holder {
            format: LogFormat,
        }
        let json: Holder = toml::from_str(r#"format = "json""#).unwrap();
        assert_eq!(json.format, LogFormat::Json);
        assert!(toml::from_str::<Holder>(r#"format = "Json""#).is_err());
    }
}
