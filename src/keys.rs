//! Access-token keys: the configured `[[auth.keys]]`, or, with none, a development HS256 key
//! generated into `data_dir` on first start (its path is logged, never its value).

use anyhow::Context;
use presence::token::{self, AccountSid, Algorithm, Key, KeySet};

use crate::config::AppConfig;
use crate::data_dir;

/// The key id (`kid`, and `iss`) of the generated development key.
pub const DEV_KEY_ID: &str = "SKdev";
/// File name of the generated development key in `data_dir`.
pub const DEV_KEY_FILE: &str = "signing_key";

/// The verification keys, in configuration order; the first one signs `tandem token`.
pub fn key_set(config: &AppConfig) -> anyhow::Result<KeySet> {
    let keys = if config.auth_keys.is_empty() {
        data_dir::ensure(&config.data_dir)?;
        let (secret, path) = data_dir::secret(&config.data_dir, DEV_KEY_FILE)?;
        tracing::info!(path = %path.display(), kid = DEV_KEY_ID, "development token signing key");
        vec![Key::new(DEV_KEY_ID, Algorithm::Hs256, secret.as_bytes())
            .context("the generated development key")?]
    } else {
        config.auth_keys.iter().map(|k| k.key.clone()).collect()
    };
    let settings = token::Config {
        // Tokens must name our account as their subject.
        account_sid: AccountSid::parse(&config.router.account.sid),
        ..token::Config::default()
    };
    KeySet::new(keys, settings).context("building the token key set")
}
