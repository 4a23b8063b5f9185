//! Tandem's SIP core (RFC 3261).
//!
//! The protocol core performs no I/O: messages ([`message`]), transactions ([`transaction`]),
//! dialogs ([`dialog`]) and digest authentication with the registrar ([`auth`],
//! [`registrar`]) are driven by `handle_*(now, input)` calls and drained with `poll_*`. Time is an
//! argument, never read from the clock. The tokio shell ([`transport`], [`endpoint`]) is thin.
//!
//! Every other crate sees our own [`message::Request`], [`message::Response`],
//! [`message::CallId`], [`message::Tag`] and [`message::Branch`]. The SIP grammar is ours end to
//! end: `rsip` 0.4 got too much of it wrong to wrap (see `docs/sip.md`).

pub mod auth;
pub mod config;
pub mod dialog;
pub mod endpoint;
pub mod message;
pub mod registrar;
pub mod transaction;
pub mod transport;

pub use config::Config;
