//! Tandem's presence: who is connected, and may they be?
//!
//! - [`token`]: access tokens (JWTs shaped like Twilio's AccessToken) are verified against a
//!   [`token::KeySet`] in which each key accepts exactly one algorithm; [`token::mint`] issues
//!   development tokens for `tandem token`.
//! - [`registry`]: identity → connected devices, their status, whether they take incoming calls,
//!   and who subscribed to their presence. The router asks it where a client is through the
//!   [`registry::PresenceStore`] trait, so that a shared store can replace it later.
//! - [`device`]: what the registry and the router send to a connected device ([`ToDevice`]),
//!   over a bounded channel whose overflow the WebSocket gateway turns into a closed connection.
//! - [`resource`]: the presence status resource of the HTTP API and of `presence` events.
//! - [`gateway`]: the WebSocket gateway (`GET /v1/ws`), the tokio shell that drives the rest.
//!
//! Apart from [`gateway`], the crate does no I/O and reads no clock: time is an argument
//! (`now: SystemTime`, since tokens and the HTTP resource speak wall-clock time).
//!
//! Invariant: presence knows nothing of SIP. Calls appear only as opaque CallSids, SDP as an
//! opaque string; the router is the only place that joins presence and SIP.
#![forbid(unsafe_code)]

pub mod device;
pub mod gateway;
pub mod identity;
pub mod registry;
pub mod resource;
pub mod token;

pub use device::{CallEvent, CallReply, DeviceId, DeviceReceiver, DeviceSender, ToDevice};
pub use identity::{Identity, IdentityError};
pub use registry::{DeviceGuard, PresenceStore, Registry, RegistryError};
pub use resource::{PresenceResource, PresenceStatus, Status};
pub use token::{Claims, KeySet, TokenError};
