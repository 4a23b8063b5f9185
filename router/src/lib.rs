//! Call router: the only place where SIP, media and presence meet (the B2BUA).
//!
//! It fetches call instructions from the application that answers a dialled number, runs them
//! verb by verb, and joins the inbound SIP call to client devices or other SIP legs.
//!
//! This version holds the application directory: which application answers which dialled
//! number ([`Directory`], built from [`Config`]), and [`calls`] resolves incoming SIP calls
//! against it. [`twiml`] parses the call instructions (TwiML) an application returns.

#![forbid(unsafe_code)]

pub mod calls;
pub mod config;
pub mod directory;
pub mod twiml;

pub use config::Config;
pub use directory::{Directory, Resolution};
