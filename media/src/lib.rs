//! Tandem's media layer, audio core: G.711 codecs, linear PCM conversion, channel down-mix,
//! resampling, bounded decoding of WAV / MP3 / raw µ-law, and the pipeline that turns any of
//! those into 8 kHz µ-law for the telephone network.
//!
//! Invariant: this crate never sees SIP types. It knows audio, codecs and (later) RTP; the
//! `router` crate is the only place that joins media to signalling.
//!
//! Invariant: everything here is sans-IO. Functions take bytes or samples and return bytes or
//! samples: no sockets, no files, no HTTP, no threads. The one concession is
//! [`decode`], which reads the clock to bound how long a decode may run (decoding is CPU
//! work on untrusted input); that read lives in one place and tests can replace the clock.
//!
//! Code map:
//! - [`codec`]: G.711 µ-law / A-law encode, decode and transcode (ITU-T G.711, RFC 3551).
//! - [`pcm`]: `f32` ↔ 16-bit linear samples, with clipping.
//! - [`mix`]: interleaved multi-channel → mono.
//! - [`resample`]: one-shot sample-rate conversion (rubato's FFT resampler).
//! - [`decode`]: format detection and bounded decoding ([`Limits`]).
//! - [`pipeline`]: [`to_telephony`], decode → mono → 8 kHz → µ-law.
//! - [`outbound`]: outbound HTTP to user-named URLs (address vetting, pinned connections,
//!   redirect targets, capped bodies), shared by the prompt cache and the router's webhooks.

#![forbid(unsafe_code)]

pub mod cache;
pub mod codec;
pub mod decode;
pub mod dtmf;
mod error;
pub mod http;
pub mod mix;
pub mod outbound;
pub mod pcm;
pub mod pipeline;
pub mod ports;
pub mod resample;
pub mod rtp;
pub mod sdp;

pub use decode::{Decoded, Format, Hint, Limits};
pub use error::AudioError;
pub use pipeline::{to_telephony, Telephony};
