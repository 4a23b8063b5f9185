//! Where the audio of a prompt comes from: the prompt cache for URLs and speech, the binary
//! itself for the demo application's welcome prompt, and a generated ringback tone.

use std::sync::{Arc, LazyLock};

use crate::call::Audio;

use super::Services;

/// The base URL of the bundled demo application's document. Documents from webhooks can
/// never name this scheme (the TwiML parser accepts only http and https URLs), so only the
/// demo reaches the bundled audio.
pub const DEMO_BASE: &str = "tandem://demo/";

/// The demo application: the welcome prompt, then `<Dial><Client>alice</Client></Dial>`.
pub const DEMO_DOCUMENT: &str =
    "<Response><Play>welcome</Play><Dial><Client>alice</Client></Dial></Response>";

static WELCOME: &[u8] = include_bytes!("../../assets/welcome.ulaw");

/// 8 kHz µ-law audio of the prompt, or why it cannot be played.
pub(super) async fn resolve(services: &Services, audio: &Audio) -> Result<Arc<[u8]>, String> {
    let entry = match audio {
        Audio::Ringback => return Ok(RINGBACK.clone()),
        Audio::Url(url) if url.starts_with(DEMO_BASE) => {
            return match &url[DEMO_BASE.len()..] {
                "welcome" => Ok(Arc::from(WELCOME)),
                other => Err(format!("no bundled prompt {other:?}")),
            };
        }
        Audio::Url(url) => services.cache.get_or_fetch(url).await,
        Audio::Say {
            text,
            voice,
            language,
        } => {
            services
                .cache
                .get_or_synthesize(text, Some(voice), Some(language))
                .await
        }
    }
    .map_err(|error| error.to_string())?;
    match services.cache.open(&entry.id).await {
        Ok(Some(media)) => Ok(Arc::from(media.bytes.as_ref())),
        Ok(None) => Err(format!(
            "media {} left the cache before it played",
            entry.id
        )),
        Err(error) => Err(error.to_string()),
    }
}

/// North American ringback (ANSI T1.401): 440 Hz + 480 Hz, 2 s on, 4 s off, at about
/// −19 dBm0 per tone; one 6 s cadence, looped by the player.
static RINGBACK: LazyLock<Arc<[u8]>> = LazyLock::new(|| {
    const RATE: f64 = 8000.0;
    let samples: Vec<i16> = (0..48_000)
        .map(|n| {
            if n >= 16_000 {
                return 0;
            }
            let t = f64::from(n) / RATE;
            let tone = (2.0 * std::f64::consts::PI * 440.0 * t).sin()
                + (2.0 * std::f64::consts::PI * 480.0 * t).sin();
            (tone * 2000.0) as i16
        })
        .collect();
    let mut encoded = vec![0u8; samples.len()];
    media::codec::encode_ulaw(&samples, &mut encoded);
    Arc::from(encoded)
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ringback_is_two_seconds_of_tone_then_four_of_silence() {
        let mut decoded = vec![0i16; RINGBACK.len()];
        media::codec::decode_ulaw(&RINGBACK, &mut decoded);
        assert_eq!(decoded.len(), 48_000);
        let energy = |range: std::ops::Range<usize>| {
            decoded[range]
                .iter()
                .map(|&s| f64::from(s).abs())
                .sum::<f64>()
        };
        assert!(energy(0..16_000) > 16_000.0 * 500.0);
        assert!(energy(16_000..48_000) < 32_000.0 * 10.0);
    }

    #[test]
    fn the_welcome_prompt_is_bundled_and_the_demo_parses() {
        assert!(WELCOME.len() > 8000, "at least a second of audio");
        let document = crate::twiml::parse(DEMO_DOCUMENT.as_bytes()).unwrap();
        assert_eq!(document.verbs.len(), 2);
    }
}
