//! Tandem, an open-source SIP softswitch: the SIP edge, presence gateway, call router and media
//! layer in one binary.
//!
//! This library is the binary's own code, split out so that it can be tested: the command line
//! ([`cli`]), the configuration file and its resolution into each subsystem's `Config`
//! ([`config`]), logging ([`logging`]) and `serve` itself ([`app`]).

pub mod app;
pub mod cli;
pub mod config;
pub mod data_dir;
pub mod http;
pub mod keys;
pub mod logging;
