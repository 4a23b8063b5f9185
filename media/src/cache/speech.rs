//! Text to speech for `<Say>`: the [`Synthesizer`] abstraction, its espeak-ng implementation
//! ([`EspeakNg`]), and the validation and voice mapping that run before any process is started.
//!
//! The cache ([`Cache::get_or_synthesize`](super::Cache::get_or_synthesize)) resolves the
//! caller's `voice` and `language` to one espeak-ng voice name with [`resolve_voice`], derives
//! the entry id from that name and the text, and only on a miss asks the synthesizer for a WAV,
//! which then goes through the same pipeline as a fetched prompt.
//!
//! Invariant: nothing the caller sends reaches a process unvalidated. The text is one argv
//! element after `--` (never a shell, never an option), and the voice name is built only from
//! letters, digits, `-`, `+` and `_`.

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

/// The longest text accepted, in characters (Unicode scalar values).
pub const MAX_TEXT_CHARS: usize = 4_000;
/// The longest `voice` or `language` value accepted, in bytes.
pub const MAX_VOICE_LENGTH: usize = 64;
/// The espeak-ng voice used when the caller names neither a language nor a usable voice.
pub const DEFAULT_LANGUAGE: &str = "en-us";

/// Why speech could not be synthesized. The first five variants are the caller's fault and are
/// found before any process starts; `UnknownVoice` is the caller's fault as reported by the
/// backend; the rest are the backend's.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SpeechError {
    /// Caller: the text is empty or only whitespace.
    #[error("text to say is empty")]
    EmptyText,
    /// Caller: the text contains a NUL character (it cannot be a process argument).
    #[error("text to say contains a NUL character")]
    InvalidText,
    /// Caller: the text is longer than the limit.
    #[error("text to say is longer than {limit} characters")]
    TextTooLong {
        /// The limit in characters.
        limit: usize,
    },
    /// Caller: the voice is too long or has characters outside letters, digits, `-`, `+`, `_`.
    #[error("invalid voice (letters, digits, '-', '+' and '_' only, at most 64)")]
    InvalidVoice,
    /// Caller: the language is too long or has characters outside letters, digits, `-`, `_`.
    #[error("invalid language (letters, digits, '-' and '_' only, at most 64)")]
    InvalidLanguage,
    /// Caller: the backend does not know the resolved voice.
    #[error("the speech backend has no voice {voice:?}")]
    UnknownVoice {
        /// The resolved backend voice name.
        voice: String,
    },
    /// Backend: the program is not installed (or not on `PATH`).
    #[error("{program} is not installed (install the Debian package espeak-ng)")]
    ProgramMissing {
        /// The program that was looked for.
        program: String,
    },
    /// Backend: the program could not be started for another reason.
    #[error("could not start the speech backend")]
    Spawn(#[source] Arc<io::Error>),
    /// Backend: it did not finish within the limit (the process is killed).
    #[error("speech synthesis did not finish within {limit:?}")]
    Timeout {
        /// The limit that was exceeded.
        limit: Duration,
    },
    /// Backend: it wrote more audio than the cap.
    #[error("speech backend output exceeds {limit} bytes")]
    OutputTooLarge {
        /// The cap in bytes.
        limit: usize,
    },
    /// Backend: it exited with a failure status.
    #[error("speech backend failed with exit status {code:?}")]
    Failed {
        /// The exit code, if it exited (rather than being killed by a signal).
        code: Option<i32>,
    },
    /// Backend: it succeeded but produced no audio.
    #[error("speech backend produced no audio")]
    EmptyOutput,
}

impl SpeechError {
    /// Whether the caller's request is at fault (a 4xx), rather than the backend.
    pub fn is_caller_fault(&self) -> bool {
        matches!(
            self,
            SpeechError::EmptyText
                | SpeechError::InvalidText
                | SpeechError::TextTooLong { .. }
                | SpeechError::InvalidVoice
                | SpeechError::InvalidLanguage
                | SpeechError::UnknownVoice { .. }
        )
    }
}

/// The future a [`Synthesizer`] returns: the audio as a WAV file.
pub type Synthesis<'a> = Pin<Box<dyn Future<Output = Result<Vec<u8>, SpeechError>> + Send + 'a>>;

/// A text-to-speech backend. It gets validated text and a resolved voice name and answers with
/// a WAV file (any rate, mono or not: the cache transcodes it). The cache bounds how long it
/// may run by dropping the future, so an implementation that runs a process must kill it on
/// drop.
pub trait Synthesizer: Send + Sync + std::fmt::Debug + 'static {
    /// Speaks `text` with the backend voice `voice` (from [`resolve_voice`]).
    fn synthesize<'a>(&'a self, text: &'a str, voice: &'a str) -> Synthesis<'a>;
}

/// [`Synthesizer`] running `espeak-ng -v <voice> --stdout -- <text>` and reading the WAV it
/// writes to standard output.
#[derive(Debug, Clone)]
pub struct EspeakNg {
    /// The program, looked up on `PATH` unless it is a path (default `espeak-ng`).
    pub program: PathBuf,
    /// The most WAV bytes read (default 32 MiB, about 12 minutes at espeak-ng's 22,050 Hz
    /// 16-bit mono, well past what 4,000 characters take).
    pub max_output_bytes: usize,
}

impl Default for EspeakNg {
    fn default() -> EspeakNg {
        EspeakNg {
            program: PathBuf::from("espeak-ng"),
            max_output_bytes: 32 << 20,
        }
    }
}

/// How much of standard error is kept to tell an unknown voice from other failures.
const MAX_STDERR_BYTES: usize = 4_096;

impl Synthesizer for EspeakNg {
    fn synthesize<'a>(&'a self, text: &'a str, voice: &'a str) -> Synthesis<'a> {
        Box::pin(self.run(text, voice))
    }
}

impl EspeakNg {
    async fn run(&self, text: &str, voice: &str) -> Result<Vec<u8>, SpeechError> {
        let program = self.program.display().to_string();
        let mut child = tokio::process::Command::new(&self.program)
            .arg("-v")
            .arg(voice)
            .arg("--stdout")
            // Everything after `--` is text, so a text starting with `-` is spoken, not parsed.
            .arg("--")
            .arg(text)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // The cache's timeout drops this future; the process must not outlive it.
            .kill_on_drop(true)
            .spawn()
            .map_err(|error| match error.kind() {
                io::ErrorKind::NotFound => SpeechError::ProgramMissing { program },
                _ => SpeechError::Spawn(Arc::new(error)),
            })?;
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(SpeechError::Spawn(Arc::new(io::Error::other(
                "espeak-ng pipes missing",
            ))));
        };
        // Both pipes are drained together so neither can fill up and stall the child.
        let (audio, errors) = tokio::join!(
            read_capped(stdout, self.max_output_bytes),
            read_capped(stderr, MAX_STDERR_BYTES)
        );
        let audio = audio.map_err(|error| SpeechError::Spawn(Arc::new(error)))?;
        let Some(mut audio) = audio else {
            // Dropping the child kills it (kill_on_drop).
            return Err(SpeechError::OutputTooLarge {
                limit: self.max_output_bytes,
            });
        };
        let status = child
            .wait()
            .await
            .map_err(|error| SpeechError::Spawn(Arc::new(error)))?;
        if !status.success() {
            let errors = errors.ok().flatten().unwrap_or_default();
            if String::from_utf8_lossy(&errors).contains("voice does not exist") {
                return Err(SpeechError::UnknownVoice {
                    voice: voice.to_owned(),
                });
            }
            return Err(SpeechError::Failed {
                code: status.code(),
            });
        }
        if !fix_streamed_wav_sizes(&mut audio) {
            return Err(SpeechError::EmptyOutput);
        }
        Ok(audio)
    }
}

/// Reads `reader` to its end; `None` if it has more than `limit` bytes.
async fn read_capped(reader: impl AsyncRead + Unpin, limit: usize) -> io::Result<Option<Vec<u8>>> {
    let mut bytes = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    reader.take(cap).read_to_end(&mut bytes).await?;
    Ok((bytes.len() <= limit).then_some(bytes))
}

/// espeak-ng streams its WAV, so the RIFF and `data` sizes are placeholders (0x7ffff000).
/// Rewrites both with the real sizes so the decoder sees a well-formed file; `false` if the
/// bytes are not a WAV or hold no samples.
fn fix_streamed_wav_sizes(wav: &mut [u8]) -> bool {
    if wav.len() < 12 || &wav[0..4] != b"RIFF" || &wav[8..12] != b"WAVE" {
        return false;
    }
    let Ok(riff_size) = u32::try_from(wav.len() - 8) else {
        return false;
    };
    wav[4..8].copy_from_slice(&riff_size.to_le_bytes());
    // Walk the chunks (RIFF: 4-byte id, 4-byte little-endian size, body padded to even).
    let mut offset = 12;
    while offset + 8 <= wav.len() {
        let body = offset + 8;
        if &wav[offset..offset + 4] == b"data" {
            let samples = wav.len() - body;
            let Ok(size) = u32::try_from(samples) else {
                return false;
            };
            wav[offset + 4..body].copy_from_slice(&size.to_le_bytes());
            return samples > 0;
        }
        let mut size_bytes = [0u8; 4];
        size_bytes.copy_from_slice(&wav[offset + 4..body]);
        let size = u32::from_le_bytes(size_bytes) as usize;
        offset = body.saturating_add(size).saturating_add(size & 1);
    }
    false
}

/// Resolves the caller's Twilio-style `voice` and `language` to one espeak-ng voice name,
/// validating both; the name is what the cache keys on and what the backend is given.
///
/// - `language` (a BCP 47 tag such as `en-US`) is lower-cased with `_` read as `-`; espeak-ng
///   matches it to its nearest voice (`de-DE` → German). Absent: `en-us`.
/// - `voice`: `man` adds the male variant `+m3`, `woman` and `alice` the female `+f3`.
///   Cloud voices (`Polly.*`, `Google.*`) and `default` are accepted and ignored (the default
///   espeak-ng voice for the language). Any other value is taken as an espeak-ng voice name
///   (for example `en-gb-scotland` or `de+f2`) and then `language` is not used.
pub fn resolve_voice(voice: Option<&str>, language: Option<&str>) -> Result<String, SpeechError> {
    let language = match language.map(str::trim).filter(|text| !text.is_empty()) {
        None => DEFAULT_LANGUAGE.to_owned(),
        Some(tag) => {
            if tag.len() > MAX_VOICE_LENGTH
                || tag.starts_with(['-', '_'])
                || !tag
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_'))
            {
                return Err(SpeechError::InvalidLanguage);
            }
            tag.to_ascii_lowercase().replace('_', "-")
        }
    };
    let Some(voice) = voice.map(str::trim).filter(|text| !text.is_empty()) else {
        return Ok(language);
    };
    if voice.len() > MAX_VOICE_LENGTH {
        return Err(SpeechError::InvalidVoice);
    }
    let lower = voice.to_ascii_lowercase();
    if let Some(name) = lower
        .strip_prefix("polly.")
        .or_else(|| lower.strip_prefix("google."))
    {
        // Cloud voice names carry '.', and neural-engine suffixes like "-Neural"; they are
        // never passed on, but must still look like names.
        if name.is_empty()
            || !name
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.'))
        {
            return Err(SpeechError::InvalidVoice);
        }
        return Ok(language);
    }
    if !lower
        .bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'+' | b'_'))
        || lower.starts_with(['-', '+'])
    {
        return Err(SpeechError::InvalidVoice);
    }
    Ok(match lower.as_str() {
        "man" => format!("{language}+m3"),
        "woman" | "alice" => format!("{language}+f3"),
        "default" => language,
        _ => lower,
    })
}

/// Checks the text: not blank, no NUL, at most [`MAX_TEXT_CHARS`] characters.
pub fn validate_text(text: &str) -> Result<(), SpeechError> {
    if text.trim().is_empty() {
        return Err(SpeechError::EmptyText);
    }
    if text.contains('\0') {
        return Err(SpeechError::InvalidText);
    }
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(SpeechError::TextTooLong {
            limit: MAX_TEXT_CHARS,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voices_map_to_espeak_names() {
        let resolve = |voice, language| resolve_voice(voice, language).ok();
        assert_eq!(resolve(None, None).as_deref(), Some("en-us"));
        assert_eq!(resolve(None, Some("en-GB")).as_deref(), Some("en-gb"));
        assert_eq!(resolve(None, Some("pt_BR")).as_deref(), Some("pt-br"));
        assert_eq!(resolve(Some("man"), None).as_deref(), Some("en-us+m3"));
        assert_eq!(
            resolve(Some("alice"), Some("de-DE")).as_deref(),
            Some("de-de+f3")
        );
        assert_eq!(resolve(Some("woman"), None), resolve(Some("alice"), None));
        assert_eq!(
            resolve(Some("Polly.Joanna-Neural"), Some("fr-FR")).as_deref(),
            Some("fr-fr")
        );
        assert_eq!(
            resolve(Some("en-gb-scotland"), Some("de")).as_deref(),
            Some("en-gb-scotland")
        );
    }

    #[test]
    fn hostile_voices_and_languages_are_refused() {
        for voice in [
            "en us",
            "a;rm -rf",
            "-v",
            "+f3",
            "x/y",
            "Polly.",
            "Polly.a b",
        ] {
            assert!(
                matches!(
                    resolve_voice(Some(voice), None),
                    Err(SpeechError::InvalidVoice)
                ),
                "{voice:?}"
            );
        }
        assert!(matches!(
            resolve_voice(Some(&"a".repeat(65)), None),
            Err(SpeechError::InvalidVoice)
        ));
        for language in ["en+f3", "en us", "../x", "é", "-v", "--"] {
            assert!(
                matches!(
                    resolve_voice(None, Some(language)),
                    Err(SpeechError::InvalidLanguage)
                ),
                "{language:?}"
            );
        }
    }

    #[test]
    fn text_bounds() {
        assert!(matches!(validate_text(" \n"), Err(SpeechError::EmptyText)));
        assert!(matches!(
            validate_text("a\0b"),
            Err(SpeechError::InvalidText)
        ));
        assert!(validate_text(&"é".repeat(MAX_TEXT_CHARS)).is_ok());
        assert!(matches!(
            validate_text(&"a".repeat(MAX_TEXT_CHARS + 1)),
            Err(SpeechError::TextTooLong { .. })
        ));
    }

    #[test]
    fn streamed_wav_sizes_are_rewritten() {
        let mut wav = Vec::new();
        wav.extend_from_slice(b"RIFF\x00\xf0\xff\x7fWAVEfmt \x10\x00\x00\x00");
        wav.extend_from_slice(&[0; 16]);
        wav.extend_from_slice(b"data\x00\xf0\xff\x7f");
        wav.extend_from_slice(&[1, 2, 3, 4]);
        assert!(fix_streamed_wav_sizes(&mut wav));
        assert_eq!(&wav[4..8], &(wav.len() as u32 - 8).to_le_bytes());
        assert_eq!(&wav[40..44], &4u32.to_le_bytes());
        let mut header_only = wav[..44].to_vec();
        assert!(!fix_streamed_wav_sizes(&mut header_only));
        assert!(!fix_streamed_wav_sizes(&mut b"not a wav at all".to_vec()));
    }
}
