//! Call router: the only place where SIP, media and presence meet (the B2BUA).
//!
//! It fetches call instructions from the application that answers a dialled number, runs them
//! verb by verb, and joins the inbound SIP call to client devices or other SIP legs.
//!
//! - [`Directory`] (built from [`Config`]): which application answers which dialled number.
//! - [`webhook`] fetches call instructions, signed like Twilio's requests, and sends status
//!   callbacks; [`twiml`] parses them into typed verbs.
//! - [`call`]: the per-call state machine (sans-IO, takes `now`), verb by verb.
//! - [`engine`]: the tokio shell: one task per call, one per dialled leg, performing the
//!   machine's actions with the SIP endpoint, presence, RTP ports, prompt player and cache.
//! - [`records`]: the call table of `GET /v1/calls` and the call metrics; [`sid`]: CallSids.
//!
//! Invariant: only this crate joins `sip`, `media` and `presence`; none of them knows another.

#![forbid(unsafe_code)]

pub mod call;
pub mod config;
pub mod directory;
pub mod engine;
pub mod records;
pub mod sid;
pub mod twiml;
pub mod webhook;

pub use config::Config;
pub use directory::{Directory, Resolution};
