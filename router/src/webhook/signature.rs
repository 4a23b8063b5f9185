//! `X-Twilio-Signature`: Twilio's webhook signature, so that existing Twilio request validators
//! accept Tandem's requests.
//!
//! Twilio's documented algorithm ("Webhooks security", validating requests): start from the
//! full URL as requested (scheme, host, port when not the default, path and query string,
//! including the parameters of a GET); for a POST append every body parameter, sorted by name,
//! as the name immediately followed by the value, without delimiters; HMAC-SHA1 that string keyed
//! by the account auth token; base64-encode the digest (standard alphabet, with padding).

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;

use super::Params;
use crate::config::WebhookMethod;

/// The `X-Twilio-Signature` value of a request to `url` (exactly as sent, query included)
/// with `method` and, for a POST, body `params`. A GET's parameters must already be in `url`'s
/// query: they are signed as part of the URL and `params` is ignored.
///
/// POST parameters are sorted by name and, for a repeated name, by value (byte order, which for
/// UTF-8 is code-point order, the order Twilio's helper libraries use).
pub fn signature(auth_token: &str, url: &str, method: WebhookMethod, params: &Params) -> String {
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(auth_token.as_bytes()) else {
        // RFC 2104 §2: keys of any length are accepted (longer ones are hashed first); the
        // error exists only for MACs with fixed key sizes.
        unreachable!("HMAC accepts keys of any length");
    };
    mac.update(url.as_bytes());
    if method == WebhookMethod::Post {
        let mut sorted: Vec<(&str, &str)> = params.iter().collect();
        sorted.sort_unstable();
        for (name, value) in sorted {
            mac.update(name.as_bytes());
            mac.update(value.as_bytes());
        }
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn twilio_example_params() -> Params {
        [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]
        .into_iter()
        .collect()
    }

    // Known vectors computed independently with Python's standard library:
    //   import hmac, hashlib, base64
    //   s = url + "".join(k + v for k, v in sorted(params))
    //   base64.b64encode(hmac.new(token.encode(), s.encode(), hashlib.sha1).digest())
    // The first is also the example in Twilio's security documentation.

    #[test]
    fn post_matches_twilio_documented_example() {
        let signed = signature(
            "12345",
            "https://mycompany.com/myapp.php?foo=1&bar=2",
            WebhookMethod::Post,
            &twilio_example_params(),
        );
        assert_eq!(signed, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=");
    }

    #[test]
    fn post_parameter_order_does_not_matter() {
        let mut reversed: Vec<(String, String)> = twilio_example_params()
            .iter()
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect();
        reversed.reverse();
        let signed = signature(
            "12345",
            "https://mycompany.com/myapp.php?foo=1&bar=2",
            WebhookMethod::Post,
            &reversed.into_iter().collect(),
        );
        assert_eq!(signed, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=");
    }

    #[test]
    fn get_signs_the_url_alone() {
        let url =
            "https://mycompany.com/myapp.php?foo=1&bar=2&CallSid=CA1234567890ABCDE&Digits=1234";
        // Python: the same with params = [].
        assert_eq!(
            signature("12345", url, WebhookMethod::Get, &Params::new()),
            "L2PBWCn+V0G1KfmEqKao6qMzPqo="
        );
        // GET parameters live in the URL; the params argument is not appended.
        assert_eq!(
            signature("12345", url, WebhookMethod::Get, &twilio_example_params()),
            "L2PBWCn+V0G1KfmEqKao6qMzPqo="
        );
    }

    #[test]
    fn repeated_names_sort_by_value_and_non_ascii_sorts_by_code_point() {
        let params: Params = [("b", "2"), ("a", "z"), ("a", "y"), ("Z", "é")]
            .into_iter()
            .collect();
        // Python: token "secret-token", url below, the params above.
        assert_eq!(
            signature(
                "secret-token",
                "http://127.0.0.1:9000/voice",
                WebhookMethod::Post,
                &params
            ),
            "wi+CbsWhG3vsGd0aNVA8X951k6k="
        );
    }

    #[test]
    fn a_different_token_gives_a_different_signature() {
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        let params = twilio_example_params();
        assert_ne!(
            signature("12345", url, WebhookMethod::Post, &params),
            signature("12346", url, WebhookMethod::Post, &params)
        );
    }
}
