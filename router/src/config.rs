//! Runtime configuration of the call router. The binary maps the `[account]` and `[[numbers]]`
//! sections of the TOML file onto this, with secrets already resolved and every URL checked.

use std::fmt;

/// Everything the router needs to run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    /// The applications that answer dialled numbers. Empty: the bundled demo application answers
    /// every number (see [`crate::Directory`]).
    pub numbers: Vec<Number>,
    /// The account the calls belong to.
    pub account: Account,
    /// Calls live at once at most; `None`: as many as the RTP sockets the open-files limit
    /// allows (see `engine::Services::media_descriptors`).
    pub max_calls: Option<usize>,
}

/// The account: its sid appears in webhook requests as `AccountSid`, its auth token signs them.
#[derive(Clone, PartialEq, Eq)]
pub struct Account {
    /// `AC` followed by 32 hexadecimal digits.
    pub sid: String,
    /// The key of the `X-Twilio-Signature` HMAC (a secret: never logged). `None` when the
    /// configuration sets none: webhook requests then carry no signature.
    pub auth_token: Option<String>,
}

/// The account sid used when the configuration names none.
pub const DEFAULT_ACCOUNT_SID: &str = "AC00000000000000000000000000000000";

impl Default for Account {
    fn default() -> Self {
        Account {
            sid: DEFAULT_ACCOUNT_SID.to_owned(),
            auth_token: None,
        }
    }
}

impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Account")
            .field("sid", &self.sid)
            .field(
                "auth_token",
                &self.auth_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// One dialled number and the application that answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Number {
    /// The user part of the Request-URI, unescaped (e.g. `+15550100`), or `*` for any number.
    pub number: String,
    /// Where the call instructions are fetched (an `http` or `https` URL).
    pub voice_url: String,
    /// How `voice_url` is requested.
    pub voice_method: WebhookMethod,
    /// Fetched when `voice_url` fails or returns unusable instructions.
    pub voice_fallback_url: Option<String>,
    /// Receives call status callbacks.
    pub status_callback: Option<String>,
}

/// The HTTP method of a webhook request (Twilio's `voiceMethod`, `method` attributes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum WebhookMethod {
    /// Parameters in the query string.
    Get,
    /// Parameters form-encoded in the body (Twilio's default).
    #[default]
    Post,
}

impl WebhookMethod {
    /// The method as it appears on the wire and in the configuration file.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookMethod::Get => "GET",
            WebhookMethod::Post => "POST",
        }
    }
}

impl fmt::Display for WebhookMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_debug_redacts_the_auth_token() {
        let account = Account {
            sid: DEFAULT_ACCOUNT_SID.to_owned(),
            auth_token: Some("hunter2-token".to_owned()),
        };
        let shown = format!("{account:?}");
        assert!(!shown.contains("hunter2-token"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
        assert!(shown.contains(DEFAULT_ACCOUNT_SID), "{shown}");
    }

    #[test]
    fn account_debug_shows_an_absent_token_as_none() {
        let shown = format!("{:?}", Account::default());
        assert!(shown.contains("auth_token: None"), "{shown}");
    }

    #[test]
    fn webhook_method_defaults_to_post_like_twilio() {
        assert_eq!(WebhookMethod::default(), WebhookMethod::Post);
        assert_eq!(WebhookMethod::Get.to_string(), "GET");
    }
}
