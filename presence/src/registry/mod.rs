//! The presence registry: identity → connected devices, in one process.
//!
//! A [`Registry`] maps each identity to an entry holding its devices (id, queue, chosen
//! [`Status`], whether it takes incoming calls, how many calls it is in, connected_at,
//! last_seen) and its watchers (devices subscribed to its presence). The map is a `DashMap`:
//! every operation takes one shard lock, does a bounded amount of work (at most
//! [`Config::max_devices_per_identity`] devices, one non-blocking send per watcher) and releases
//! it. No lock is ever held while another is taken, and none escapes the registry, so no caller
//! can deadlock it. Presence events are queued while the entry's lock is held, which orders them:
//! a watcher sees one identity's changes in the order they happened, the last one being current.
//!
//! Ownership replaces clean-up code: [`Registry::connect`] returns a [`DeviceGuard`] whose drop
//! removes the device and its subscriptions, so a connection task that ends for any reason
//! (error, panic, timeout) leaves no ghost device. [`Registry::mark_busy`] returns a
//! [`BusyGuard`]: the device shows busy while any such guard lives.
//!
//! The router reaches the registry through [`PresenceStore`], which a shared (Redis) store can
//! implement later; see `docs/presence.md`.

mod store;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use dashmap::mapref::entry::Entry as MapEntry;
use dashmap::DashMap;

use crate::device::{DeviceId, DeviceSender, SendError, ToDevice};
use crate::identity::Identity;
use crate::resource::{DeviceResource, PresenceResource, PresenceStatus, Status};

pub use store::{DeviceRoute, PresenceStore};

/// Limits of the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Devices one identity may have connected at once (close code 4009 beyond).
    pub max_devices_per_identity: usize,
    /// Identities one device may subscribe to.
    pub max_subscriptions_per_device: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_devices_per_identity: 10,
            max_subscriptions_per_device: 100,
        }
    }
}

/// Why the registry refused an operation. Displays as a WebSocket close reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// The identity already has the maximum number of devices connected (close code 4009).
    #[error("too many devices for this identity (limit {limit})")]
    TooManyDevices {
        /// The configured limit.
        limit: usize,
    },
    /// `register` without the incoming grant (close code 4003).
    #[error("token does not grant incoming calls")]
    IncomingNotGranted,
    /// A `subscribe` would exceed the per-device limit; nothing was subscribed.
    #[error("too many subscriptions (limit {limit})")]
    TooManySubscriptions {
        /// The configured limit.
        limit: usize,
    },
}

/// The presence registry of this process. Clones share it.
#[derive(Clone)]
pub struct Registry {
    shared: Arc<Shared>,
}

/// A device the router may offer a call to.
#[derive(Debug, Clone)]
pub struct Reachable<S = DeviceSender> {
    /// The device.
    pub device_id: DeviceId,
    /// Its queue (for a shared store: its route to the owning node).
    pub sender: S,
}

/// The devices [`Registry::reachable_devices`] returns: shared, since the registry keeps the
/// list ready for the next lookup.
pub type ReachableDevices<S = DeviceSender> = Arc<[Reachable<S>]>;

/// Gauges and counters for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Metrics {
    /// Devices connected now.
    pub devices_online: u64,
    /// Identities with at least one device connected now.
    pub identities_online: u64,
    /// Presence events dropped because a subscriber's queue was full (since start).
    pub events_dropped: u64,
}

/// A connected device. Dropping it disconnects the device: it disappears from the registry,
/// its subscriptions end, and its identity's watchers are told.
pub struct DeviceGuard {
    registry: Registry,
    identity: Identity,
    device_id: DeviceId,
    sender: DeviceSender,
    watching: Vec<Identity>,
}

/// A device in a call: it shows `busy` and is not offered other calls while this lives.
pub struct BusyGuard {
    registry: Registry,
    identity: Identity,
    device_id: DeviceId,
}

impl Registry {
    /// An empty registry.
    pub fn new(config: Config) -> Registry {
        Registry {
            shared: Arc::new(Shared {
                config,
                identities: DashMap::new(),
                nobody: Arc::from(Vec::new()),
                devices_online: AtomicU64::new(0),
                identities_online: AtomicU64::new(0),
                events_dropped: AtomicU64::new(0),
            }),
        }
    }

    /// The limits in force.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// Adds a device for `identity` (after `listen` with a valid token). It starts `available`,
    /// not registered for incoming calls; `incoming_allowed` is the token's incoming grant,
    /// which [`DeviceGuard::set_incoming`] enforces. `sender` is the connection's queue.
    pub fn connect(
        &self,
        identity: Identity,
        incoming_allowed: bool,
        sender: DeviceSender,
        now: SystemTime,
    ) -> Result<DeviceGuard, RegistryError> {
        let limit = self.shared.config.max_devices_per_identity;
        let shared = &self.shared;
        let device_id = shared
            .update(&identity, Create::IfAbsent, |entry| {
                if entry.devices.len() >= limit {
                    return Err(RegistryError::TooManyDevices { limit });
                }
                let device_id = entry.unused_device_id();
                entry.devices.push(Device {
                    id: device_id,
                    sender: sender.clone(),
                    status: Status::Available,
                    incoming_allowed,
                    incoming: false,
                    calls: 0,
                    connected_at: now,
                    last_seen: now,
                });
                shared.devices_online.fetch_add(1, Ordering::Relaxed);
                if entry.devices.len() == 1 {
                    shared.identities_online.fetch_add(1, Ordering::Relaxed);
                }
                shared.changed(&identity, entry);
                Ok(device_id)
            })
            .unwrap_or(Err(RegistryError::TooManyDevices { limit }))?;
        Ok(DeviceGuard {
            registry: self.clone(),
            identity,
            device_id,
            sender,
            watching: Vec::new(),
        })
    }

    /// The devices of `identity` that may be offered a call now: registered for incoming calls,
    /// `available` or `away`, and in no call. Oldest connection first.
    ///
    /// The list is kept up to date on every change, so a lookup is one hash probe and one
    /// reference-count increment: lookups outnumber changes by far.
    pub fn reachable_devices(&self, identity: &Identity) -> ReachableDevices {
        match self.shared.identities.get(identity.as_str()) {
            Some(entry) => Arc::clone(&entry.reachable),
            None => Arc::clone(&self.shared.nobody),
        }
    }

    /// Marks a device busy for the life of the returned guard (a device in a call is busy until
    /// the call ends). `None` if the device is not connected.
    pub fn mark_busy(&self, identity: &Identity, device_id: DeviceId) -> Option<BusyGuard> {
        let shared = &self.shared;
        let marked = shared.update(identity, Create::Never, |entry| {
            let device = entry.device_mut(device_id)?;
            device.calls = device.calls.saturating_add(1);
            if device.calls == 1 {
                shared.changed(identity, entry);
            }
            Some(())
        });
        marked.flatten().map(|()| BusyGuard {
            registry: self.clone(),
            identity: identity.clone(),
            device_id,
        })
    }

    /// The presence status resource of `identity` (offline with no devices if unknown).
    pub fn status_of(&self, identity: &Identity) -> PresenceResource {
        match self.shared.identities.get(identity.as_str()) {
            Some(entry) => entry.resource(identity),
            None => PresenceResource::offline(identity.clone()),
        }
    }

    /// Identities with at least one device connected, in no particular order.
    pub fn online_identities(&self) -> Vec<Identity> {
        self.shared
            .identities
            .iter()
            .filter(|entry| !entry.devices.is_empty())
            .map(|entry| entry.key().clone())
            .collect()
    }

    /// Devices connected now (the `presence devices online` gauge).
    pub fn devices_online(&self) -> u64 {
        self.shared.devices_online.load(Ordering::Relaxed)
    }

    /// All gauges and counters.
    pub fn metrics(&self) -> Metrics {
        Metrics {
            devices_online: self.shared.devices_online.load(Ordering::Relaxed),
            identities_online: self.shared.identities_online.load(Ordering::Relaxed),
            events_dropped: self.shared.events_dropped.load(Ordering::Relaxed),
        }
    }
}

impl Default for Registry {
    fn default() -> Self {
        Registry::new(Config::default())
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Registry")
            .field("config", &self.shared.config)
            .field("metrics", &self.metrics())
            .finish()
    }
}

impl DeviceGuard {
    /// The device's identity.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The device's id (sent to the client in `connected`).
    pub fn device_id(&self) -> DeviceId {
        self.device_id
    }

    /// The identities this device is subscribed to.
    pub fn subscriptions(&self) -> &[Identity] {
        &self.watching
    }

    /// Sets the status the user chose (`presence {status}`).
    pub fn set_status(&self, status: Status) {
        self.change_device(|device| {
            let before = device.shown();
            device.status = status;
            device.shown() != before
        });
    }

    /// Registers (`true`) or unregisters (`false`) the device for incoming calls. Registering
    /// needs the incoming grant.
    pub fn set_incoming(&self, incoming: bool) -> Result<(), RegistryError> {
        let mut refused = false;
        self.change_device(|device| {
            if incoming && !device.incoming_allowed {
                refused = true;
                return false;
            }
            let changed = device.incoming != incoming;
            device.incoming = incoming;
            changed
        });
        if refused {
            return Err(RegistryError::IncomingNotGranted);
        }
        Ok(())
    }

    /// Applies a refreshed token's incoming grant. Losing the grant also unregisters.
    pub fn set_incoming_allowed(&self, allowed: bool) {
        self.change_device(|device| {
            device.incoming_allowed = allowed;
            let changed = device.incoming && !allowed;
            if changed {
                device.incoming = false;
            }
            changed
        });
    }

    /// Records that the device was heard from (a message or a pong). Not a presence change.
    pub fn touch(&self, now: SystemTime) {
        self.change_device(|device| {
            device.last_seen = now;
            false
        });
    }

    /// Subscribes this device to the presence of `identities`. Each newly subscribed identity's
    /// current presence is queued at once as a [`ToDevice::Presence`], then every change.
    /// Identities already subscribed are skipped. All or nothing against the limit.
    pub fn subscribe(&mut self, identities: &[Identity]) -> Result<(), RegistryError> {
        let mut new: Vec<&Identity> = Vec::with_capacity(identities.len());
        for identity in identities {
            if !self.watching.contains(identity) && !new.contains(&identity) {
                new.push(identity);
            }
        }
        let limit = self.registry.shared.config.max_subscriptions_per_device;
        if self.watching.len() + new.len() > limit {
            return Err(RegistryError::TooManySubscriptions { limit });
        }
        let shared = &self.registry.shared;
        for identity in new {
            shared.update(identity, Create::IfAbsent, |entry| {
                entry.watchers.push(Watcher {
                    device_id: self.device_id,
                    sender: self.sender.clone(),
                });
                let current = Arc::new(entry.resource(identity));
                shared.send(&self.sender, ToDevice::Presence(current));
            });
            self.watching.push(identity.clone());
        }
        Ok(())
    }

    /// Ends this device's subscriptions to `identities` (unknown ones are ignored).
    pub fn unsubscribe(&mut self, identities: &[Identity]) {
        for identity in identities {
            if let Some(position) = self.watching.iter().position(|known| known == identity) {
                let identity = self.watching.swap_remove(position);
                self.stop_watching(&identity);
            }
        }
    }

    fn change_device(&self, change: impl FnOnce(&mut Device) -> bool) {
        let shared = &self.registry.shared;
        shared.update(&self.identity, Create::Never, |entry| {
            let Some(device) = entry.device_mut(self.device_id) else {
                return;
            };
            if change(device) {
                shared.changed(&self.identity, entry);
            }
        });
    }

    fn stop_watching(&self, identity: &Identity) {
        self.registry
            .shared
            .update(identity, Create::Never, |entry| {
                entry.watchers.retain(|watcher| {
                    !(watcher.device_id == self.device_id
                        && watcher.sender.same_channel(&self.sender))
                });
            });
    }
}

impl Drop for DeviceGuard {
    fn drop(&mut self) {
        let shared = &self.registry.shared;
        shared.update(&self.identity, Create::Never, |entry| {
            let Some(position) = entry
                .devices
                .iter()
                .position(|device| device.id == self.device_id)
            else {
                return;
            };
            // `remove`, not `swap_remove`: devices stay in connection order.
            entry.devices.remove(position);
            shared.devices_online.fetch_sub(1, Ordering::Relaxed);
            if entry.devices.is_empty() {
                shared.identities_online.fetch_sub(1, Ordering::Relaxed);
            }
            shared.changed(&self.identity, entry);
        });
        for identity in std::mem::take(&mut self.watching) {
            self.stop_watching(&identity);
        }
    }
}

impl std::fmt::Debug for DeviceGuard {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("DeviceGuard")
            .field("identity", &self.identity)
            .field("device_id", &self.device_id)
            .field("subscriptions", &self.watching.len())
            .finish()
    }
}

impl BusyGuard {
    /// The busy device.
    pub fn device_id(&self) -> DeviceId {
        self.device_id
    }
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        let shared = &self.registry.shared;
        shared.update(&self.identity, Create::Never, |entry| {
            // The device may have disconnected during the call: then there is nothing to undo.
            let Some(device) = entry.device_mut(self.device_id) else {
                return;
            };
            device.calls = device.calls.saturating_sub(1);
            if device.calls == 0 {
                shared.changed(&self.identity, entry);
            }
        });
    }
}

impl std::fmt::Debug for BusyGuard {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("BusyGuard")
            .field("identity", &self.identity)
            .field("device_id", &self.device_id)
            .finish()
    }
}

struct Shared {
    config: Config,
    identities: DashMap<Identity, Entry>,
    /// The empty reachable list, shared by every unknown identity.
    nobody: ReachableDevices,
    devices_online: AtomicU64,
    identities_online: AtomicU64,
    events_dropped: AtomicU64,
}

/// One identity: its devices and who watches it. Present in the map while either is non-empty.
struct Entry {
    devices: Vec<Device>,
    /// The reachable subset of `devices`, as handed to the router.
    reachable: ReachableDevices,
    watchers: Vec<Watcher>,
}

impl Default for Entry {
    fn default() -> Self {
        Entry {
            devices: Vec::new(),
            reachable: Arc::from(Vec::new()),
            watchers: Vec::new(),
        }
    }
}

struct Device {
    id: DeviceId,
    sender: DeviceSender,
    status: Status,
    incoming_allowed: bool,
    incoming: bool,
    calls: u32,
    connected_at: SystemTime,
    last_seen: SystemTime,
}

struct Watcher {
    device_id: DeviceId,
    sender: DeviceSender,
}

/// Whether [`Shared::update`] creates a missing entry.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Create {
    IfAbsent,
    Never,
}

impl Shared {
    /// Runs `change` on the entry of `identity` under its shard lock, then drops the entry if it
    /// holds neither devices nor watchers. `None` if the entry is absent and `create` is `Never`.
    fn update<T>(
        &self,
        identity: &Identity,
        create: Create,
        change: impl FnOnce(&mut Entry) -> T,
    ) -> Option<T> {
        match self.identities.entry(identity.clone()) {
            MapEntry::Occupied(mut occupied) => {
                let result = change(occupied.get_mut());
                if occupied.get().is_empty() {
                    occupied.remove();
                }
                Some(result)
            }
            MapEntry::Vacant(vacant) => {
                if create == Create::Never {
                    return None;
                }
                let mut entry = Entry::default();
                let result = change(&mut entry);
                if !entry.is_empty() {
                    vacant.insert(entry);
                }
                Some(result)
            }
        }
    }

    /// After a visible change to `entry`'s devices: recomputes its reachable list and queues its
    /// current presence for each watcher. Called with the entry's lock held, which keeps each
    /// watcher's events for one identity in order.
    fn changed(&self, identity: &Identity, entry: &mut Entry) {
        entry.reachable = entry
            .devices
            .iter()
            .filter(|device| device.is_reachable())
            .map(|device| Reachable {
                device_id: device.id,
                sender: device.sender.clone(),
            })
            .collect();
        if entry.watchers.is_empty() {
            return;
        }
        let event = Arc::new(entry.resource(identity));
        for watcher in &entry.watchers {
            self.send(&watcher.sender, ToDevice::Presence(Arc::clone(&event)));
        }
    }

    fn send(&self, sender: &DeviceSender, event: ToDevice) {
        // A closed queue belongs to a connection whose guard is about to drop: nothing to count.
        if let Err(SendError::Full) = sender.try_send(event) {
            self.events_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Entry {
    fn is_empty(&self) -> bool {
        self.devices.is_empty() && self.watchers.is_empty()
    }

    fn device_mut(&mut self, id: DeviceId) -> Option<&mut Device> {
        self.devices.iter_mut().find(|device| device.id == id)
    }

    /// A random id not used by another device of this identity. Ids are 64 random bits, so
    /// across identities a collision among even millions of devices is vanishingly unlikely.
    fn unused_device_id(&self) -> DeviceId {
        loop {
            let candidate = DeviceId::random();
            if self.devices.iter().all(|device| device.id != candidate) {
                return candidate;
            }
        }
    }

    fn resource(&self, identity: &Identity) -> PresenceResource {
        let devices: Vec<DeviceResource> = self
            .devices
            .iter()
            .map(|device| DeviceResource {
                device_id: device.id,
                status: device.shown(),
                connected_at: device.connected_at,
                last_seen: device.last_seen,
                incoming: device.incoming,
            })
            .collect();
        PresenceResource {
            identity: identity.clone(),
            status: PresenceStatus::aggregate(devices.iter().map(|device| device.status)),
            devices,
        }
    }
}

impl Device {
    fn shown(&self) -> PresenceStatus {
        PresenceStatus::of_device(self.status, self.calls > 0)
    }

    /// Whether the device may be offered a call. A connection that has just closed still
    /// counts until its guard drops a moment later: sending to it fails with
    /// [`SendError::Closed`], which the router treats like a device that never answers. (Not
    /// checking here keeps the lookup off the channel's memory.)
    fn is_reachable(&self) -> bool {
        self.incoming && self.calls == 0 && matches!(self.status, Status::Available | Status::Away)
    }
}

#[cfg(test)]
mod tests;
