//! What the router needs from presence, as a trait: the in-process [`Registry`] implements it
//! now, a shared store (Redis, several nodes) can implement it later without changing the router.
//!
//! The methods return futures because a shared store answers over the network; the registry's
//! futures are ready at once. A device is reached through [`DeviceRoute`]: for the registry,
//! the connection's queue; for a shared store, a handle that publishes to the node owning the
//! connection (`docs/presence.md`, "Several nodes").

use std::convert::Infallible;
use std::future::{ready, Future};

use crate::device::{DeviceId, DeviceSender, SendError, ToDevice};
use crate::identity::Identity;
use crate::resource::PresenceResource;

use super::{BusyGuard, ReachableDevices, Registry};

/// Where clients are, for the router.
pub trait PresenceStore: Send + Sync + 'static {
    /// How an event reaches one device.
    type Route: DeviceRoute;
    /// Keeps a device busy while it lives (see [`Registry::mark_busy`]).
    type BusyGuard: Send + 'static;
    /// Why the store could not answer (never, for the in-process registry).
    type Error: std::error::Error + Send + Sync + 'static;

    /// The devices of `identity` that may be offered a call now.
    fn reachable_devices(
        &self,
        identity: &Identity,
    ) -> impl Future<Output = Result<ReachableDevices<Self::Route>, Self::Error>> + Send;

    /// Marks a device busy until the guard drops; `None` if it is not connected.
    fn mark_busy(
        &self,
        identity: &Identity,
        device_id: DeviceId,
    ) -> impl Future<Output = Result<Option<Self::BusyGuard>, Self::Error>> + Send;

    /// The presence status resource of `identity`.
    fn status_of(
        &self,
        identity: &Identity,
    ) -> impl Future<Output = Result<PresenceResource, Self::Error>> + Send;

    /// Identities with at least one device connected.
    fn online_identities(&self) -> impl Future<Output = Result<Vec<Identity>, Self::Error>> + Send;
}

/// Sends events to one device without waiting.
pub trait DeviceRoute: Clone + Send + Sync + 'static {
    /// Queues `event` for the device; a full or closed queue is an error, never a wait.
    fn try_send(&self, event: ToDevice) -> Result<(), SendError>;
}

impl DeviceRoute for DeviceSender {
    fn try_send(&self, event: ToDevice) -> Result<(), SendError> {
        DeviceSender::try_send(self, event)
    }
}

impl PresenceStore for Registry {
    type Route = DeviceSender;
    type BusyGuard = BusyGuard;
    type Error = Infallible;

    fn reachable_devices(
        &self,
        identity: &Identity,
    ) -> impl Future<Output = Result<ReachableDevices, Infallible>> + Send {
        ready(Ok(Registry::reachable_devices(self, identity)))
    }

    fn mark_busy(
        &self,
        identity: &Identity,
        device_id: DeviceId,
    ) -> impl Future<Output = Result<Option<BusyGuard>, Infallible>> + Send {
        ready(Ok(Registry::mark_busy(self, identity, device_id)))
    }

    fn status_of(
        &self,
        identity: &Identity,
    ) -> impl Future<Output = Result<PresenceResource, Infallible>> + Send {
        ready(Ok(Registry::status_of(self, identity)))
    }

    fn online_identities(&self) -> impl Future<Output = Result<Vec<Identity>, Infallible>> + Send {
        ready(Ok(Registry::online_identities(self)))
    }
}
