//! Registry scenarios: devices coming and going, busy calls, subscriptions and their events,
//! limits, and many threads at once. Wall-clock time is a fixed instant plus offsets.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;
use crate::device::{channel, DeviceReceiver};

fn start() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn identity(text: &str) -> Identity {
    Identity::new(text).unwrap()
}

fn connect(registry: &Registry, name: &str) -> (DeviceGuard, DeviceReceiver) {
    let (sender, receiver) = channel(64);
    let guard = registry
        .connect(identity(name), true, sender, start())
        .unwrap();
    (guard, receiver)
}

/// The presence events queued for a receiver, as (status, device count, incoming flags).
fn presence_events(receiver: &mut DeviceReceiver) -> Vec<Arc<PresenceResource>> {
    let mut events = Vec::new();
    while let Some(event) = receiver.try_recv() {
        match event {
            ToDevice::Presence(resource) => events.push(resource),
            other => panic!("unexpected event {other:?}"),
        }
    }
    events
}

fn statuses(events: &[Arc<PresenceResource>]) -> Vec<(PresenceStatus, usize)> {
    events
        .iter()
        .map(|event| (event.status, event.devices.len()))
        .collect()
}

#[test]
fn handles_can_move_between_tasks() {
    // The gateway moves guards into connection tasks; the router shares the registry.
    fn is_send_and_sync<T: Send + Sync>() {}
    is_send_and_sync::<Registry>();
    is_send_and_sync::<DeviceGuard>();
    is_send_and_sync::<BusyGuard>();
    is_send_and_sync::<ReachableDevices>();
}

#[test]
fn two_devices_of_one_identity_are_both_listed_and_reachable() {
    let registry = Registry::default();
    let (laptop, _laptop_queue) = connect(&registry, "alice");
    let (phone, _phone_queue) = connect(&registry, "alice");
    assert_ne!(laptop.device_id(), phone.device_id());

    let alice = identity("alice");
    let resource = registry.status_of(&alice);
    assert_eq!(resource.status, PresenceStatus::Available);
    let listed: Vec<DeviceId> = resource
        .devices
        .iter()
        .map(|device| device.device_id)
        .collect();
    assert_eq!(
        listed,
        [laptop.device_id(), phone.device_id()],
        "connection order"
    );
    assert!(resource.devices.iter().all(|device| !device.incoming));
    assert_eq!(resource.devices[0].connected_at, start());

    // Not reachable until registered.
    assert!(registry.reachable_devices(&alice).is_empty());
    laptop.set_incoming(true).unwrap();
    phone.set_incoming(true).unwrap();
    let reachable: Vec<DeviceId> = registry
        .reachable_devices(&alice)
        .iter()
        .map(|device| device.device_id)
        .collect();
    assert_eq!(reachable, [laptop.device_id(), phone.device_id()]);
    assert_eq!(
        registry.metrics(),
        Metrics {
            devices_online: 2,
            identities_online: 1,
            events_dropped: 0
        }
    );
    assert_eq!(registry.online_identities(), [alice]);
}

#[test]
fn reachable_senders_reach_the_device() {
    let registry = Registry::default();
    let (guard, mut queue) = connect(&registry, "alice");
    guard.set_incoming(true).unwrap();
    let reachable = registry.reachable_devices(guard.identity());
    reachable[0]
        .sender
        .try_send(ToDevice::Cancel {
            call_sid: "CA1".into(),
        })
        .unwrap();
    assert!(matches!(
        queue.try_recv(),
        Some(ToDevice::Cancel { call_sid }) if call_sid == "CA1"
    ));
}

#[test]
fn the_device_cap_refuses_one_more_until_one_leaves() {
    let registry = Registry::new(Config {
        max_devices_per_identity: 2,
        ..Config::default()
    });
    let (first, _q1) = connect(&registry, "alice");
    let (_second, _q2) = connect(&registry, "alice");
    let (sender, _q3) = channel(8);
    let refused = registry.connect(identity("alice"), true, sender.clone(), start());
    assert_eq!(
        refused.unwrap_err(),
        RegistryError::TooManyDevices { limit: 2 }
    );
    // Other identities are not affected.
    let (_bob, _q4) = connect(&registry, "bob");
    assert_eq!(registry.devices_online(), 3);
    drop(first);
    assert!(registry
        .connect(identity("alice"), true, sender, start())
        .is_ok());
}

#[test]
fn dropping_the_guard_removes_the_device_and_leaves_nothing_behind() {
    let registry = Registry::default();
    let (guard, _queue) = connect(&registry, "alice");
    guard.set_incoming(true).unwrap();
    drop(guard);
    let alice = identity("alice");
    assert_eq!(
        registry.status_of(&alice),
        PresenceResource::offline(alice.clone())
    );
    assert!(registry.reachable_devices(&alice).is_empty());
    assert!(registry.online_identities().is_empty());
    assert_eq!(registry.metrics(), Metrics::default());
    assert_eq!(registry.shared.identities.len(), 0, "no empty entry left");
}

#[test]
fn a_device_in_a_call_is_busy_until_every_call_ends() {
    let registry = Registry::default();
    let (guard, _queue) = connect(&registry, "alice");
    guard.set_incoming(true).unwrap();
    let alice = identity("alice");

    let first_call = registry.mark_busy(&alice, guard.device_id()).unwrap();
    assert_eq!(registry.status_of(&alice).status, PresenceStatus::Busy);
    assert!(registry.reachable_devices(&alice).is_empty());
    let second_call = registry.mark_busy(&alice, guard.device_id()).unwrap();
    drop(first_call);
    assert_eq!(registry.status_of(&alice).status, PresenceStatus::Busy);

    // The user's own choice made during the call is what remains afterwards.
    guard.set_status(Status::Away);
    assert_eq!(registry.status_of(&alice).status, PresenceStatus::Busy);
    drop(second_call);
    assert_eq!(registry.status_of(&alice).status, PresenceStatus::Away);
    assert_eq!(
        registry.reachable_devices(&alice).len(),
        1,
        "away still rings"
    );

    assert!(registry.mark_busy(&alice, DeviceId::from(7)).is_none());
    assert!(registry
        .mark_busy(&identity("nobody"), guard.device_id())
        .is_none());
}

#[test]
fn a_call_outliving_its_device_leaves_no_ghost() {
    let registry = Registry::default();
    let (guard, _queue) = connect(&registry, "alice");
    let alice = identity("alice");
    let call = registry.mark_busy(&alice, guard.device_id()).unwrap();
    drop(guard);
    drop(call);
    assert_eq!(registry.shared.identities.len(), 0);
    assert_eq!(registry.status_of(&alice).status, PresenceStatus::Offline);
}

#[test]
fn busy_and_dnd_devices_are_not_offered_calls() {
    let registry = Registry::default();
    let (guard, _queue) = connect(&registry, "alice");
    guard.set_incoming(true).unwrap();
    let alice = identity("alice");
    for (status, reachable, shown) in [
        (Status::Available, true, PresenceStatus::Available),
        (Status::Away, true, PresenceStatus::Away),
        (Status::Busy, false, PresenceStatus::Busy),
        (Status::Dnd, false, PresenceStatus::Busy),
    ] {
        guard.set_status(status);
        assert_eq!(
            !registry.reachable_devices(&alice).is_empty(),
            reachable,
            "{status:?}"
        );
        assert_eq!(registry.status_of(&alice).devices[0].status, shown);
    }
    guard.set_status(Status::Available);
    guard.set_incoming(false).unwrap();
    assert!(registry.reachable_devices(&alice).is_empty());
}

#[test]
fn a_closed_connection_fails_to_send_until_its_guard_drops() {
    let registry = Registry::default();
    let (guard, queue) = connect(&registry, "alice");
    guard.set_incoming(true).unwrap();
    drop(queue);
    let reachable = registry.reachable_devices(guard.identity());
    let cancel = ToDevice::Cancel {
        call_sid: "CA1".into(),
    };
    assert_eq!(reachable[0].sender.try_send(cancel), Err(SendError::Closed));
    drop(guard);
    assert!(registry.reachable_devices(&identity("alice")).is_empty());
}

#[test]
fn aggregate_status_over_devices() {
    let registry = Registry::default();
    let alice = identity("alice");
    let (laptop, _q1) = connect(&registry, "alice");
    let (phone, _q2) = connect(&registry, "alice");
    laptop.set_status(Status::Away);
    assert_eq!(registry.status_of(&alice).status, PresenceStatus::Available);
    phone.set_status(Status::Away);
    assert_eq!(registry.status_of(&alice).status, PresenceStatus::Away);
    phone.set_status(Status::Dnd);
    assert_eq!(registry.status_of(&alice).status, PresenceStatus::Busy);
    phone.set_status(Status::Available);
    let call = registry.mark_busy(&alice, laptop.device_id()).unwrap();
    assert_eq!(registry.status_of(&alice).status, PresenceStatus::Busy);
    drop(call);
    drop(phone);
    assert_eq!(registry.status_of(&alice).status, PresenceStatus::Away);
}

#[test]
fn registering_needs_the_incoming_grant() {
    let registry = Registry::default();
    let (sender, _queue) = channel(8);
    let guard = registry
        .connect(identity("alice"), false, sender, start())
        .unwrap();
    assert_eq!(
        guard.set_incoming(true),
        Err(RegistryError::IncomingNotGranted)
    );
    assert!(guard.set_incoming(false).is_ok());
    assert!(!registry.status_of(guard.identity()).devices[0].incoming);
    // A refreshed token grants it; a later one takes it back and unregisters.
    guard.set_incoming_allowed(true);
    guard.set_incoming(true).unwrap();
    assert_eq!(registry.reachable_devices(guard.identity()).len(), 1);
    guard.set_incoming_allowed(false);
    assert!(registry.reachable_devices(guard.identity()).is_empty());
    assert!(!registry.status_of(guard.identity()).devices[0].incoming);
}

#[test]
fn subscribers_get_the_current_presence_then_every_change() {
    let registry = Registry::default();
    let (mut watcher, mut events) = connect(&registry, "bob");
    let alice = identity("alice");
    watcher.subscribe(std::slice::from_ref(&alice)).unwrap();
    let initial = presence_events(&mut events);
    assert_eq!(statuses(&initial), [(PresenceStatus::Offline, 0)]);
    assert_eq!(initial[0].identity, alice);

    let (laptop, _q) = connect(&registry, "alice");
    laptop.set_status(Status::Away);
    laptop.set_status(Status::Away); // no change, no event
    laptop.set_incoming(true).unwrap();
    laptop.touch(start() + Duration::from_secs(20)); // liveness only, no event
    let call = registry.mark_busy(&alice, laptop.device_id()).unwrap();
    drop(call);
    drop(laptop);
    let changes = presence_events(&mut events);
    assert_eq!(
        statuses(&changes),
        [
            (PresenceStatus::Available, 1),
            (PresenceStatus::Away, 1),
            (PresenceStatus::Away, 1),
            (PresenceStatus::Busy, 1),
            (PresenceStatus::Away, 1),
            (PresenceStatus::Offline, 0),
        ]
    );
    assert!(!changes[1].devices[0].incoming && changes[2].devices[0].incoming);
    assert_eq!(
        changes[3].devices[0].last_seen,
        start() + Duration::from_secs(20)
    );

    watcher.unsubscribe(std::slice::from_ref(&alice));
    assert!(watcher.subscriptions().is_empty());
    let (_again, _q) = connect(&registry, "alice");
    assert!(presence_events(&mut events).is_empty());
}

#[test]
fn a_dropped_subscriber_stops_watching() {
    let registry = Registry::default();
    let (mut watcher, _events) = connect(&registry, "bob");
    watcher
        .subscribe(&[identity("alice"), identity("carol")])
        .unwrap();
    // Offline identities are held only for their watcher.
    assert_eq!(registry.shared.identities.len(), 3);
    drop(watcher);
    assert_eq!(registry.shared.identities.len(), 0);
}

#[test]
fn subscriptions_are_bounded_and_deduplicated() {
    let registry = Registry::new(Config {
        max_subscriptions_per_device: 2,
        ..Config::default()
    });
    let (mut watcher, mut events) = connect(&registry, "bob");
    watcher
        .subscribe(&[identity("alice"), identity("alice")])
        .unwrap();
    watcher.subscribe(&[identity("alice")]).unwrap();
    assert_eq!(watcher.subscriptions(), [identity("alice")]);
    assert_eq!(presence_events(&mut events).len(), 1);
    assert_eq!(
        watcher.subscribe(&[identity("carol"), identity("dave")]),
        Err(RegistryError::TooManySubscriptions { limit: 2 })
    );
    assert_eq!(watcher.subscriptions().len(), 1, "all or nothing");
    watcher.subscribe(&[identity("carol")]).unwrap();
    assert_eq!(watcher.subscriptions().len(), 2);
}

#[test]
fn a_full_subscriber_queue_counts_drops_and_flags_overflow() {
    let registry = Registry::default();
    let (sender, events) = channel(1);
    let mut watcher = registry
        .connect(identity("bob"), true, sender, start())
        .unwrap();
    watcher.subscribe(&[identity("alice")]).unwrap(); // fills the queue
    let (_laptop, _q) = connect(&registry, "alice");
    assert_eq!(registry.metrics().events_dropped, 1);
    assert!(events.has_overflowed());
}

#[test]
fn several_watchers_all_hear_of_a_change() {
    let registry = Registry::default();
    let mut watchers: Vec<(DeviceGuard, DeviceReceiver)> =
        (0..5).map(|_| connect(&registry, "bob")).collect();
    for (guard, events) in &mut watchers {
        guard.subscribe(&[identity("alice")]).unwrap();
        presence_events(events);
    }
    let (_laptop, _q) = connect(&registry, "alice");
    for (_, events) in &mut watchers {
        assert_eq!(
            statuses(&presence_events(events)),
            [(PresenceStatus::Available, 1)]
        );
    }
}

#[test]
fn the_resource_serializes_as_the_contract_says() {
    let registry = Registry::default();
    let (guard, _queue) = connect(&registry, "alice");
    guard.set_incoming(true).unwrap();
    let json = serde_json::to_value(registry.status_of(guard.identity())).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "identity": "alice",
            "status": "available",
            "devices": [{
                "device_id": guard.device_id().to_string(),
                "status": "available",
                "connected_at": "2027-01-15T08:00:00Z",
                "last_seen": "2027-01-15T08:00:00Z",
                "incoming": true
            }]
        })
    );
    let offline = serde_json::to_value(registry.status_of(&identity("zed"))).unwrap();
    assert_eq!(
        offline,
        serde_json::json!({"identity": "zed", "status": "offline", "devices": []})
    );
}

#[tokio::test]
async fn the_router_sees_the_registry_through_presence_store() {
    async fn ring<S: PresenceStore>(store: &S, who: &Identity) -> usize {
        let devices = store.reachable_devices(who).await.unwrap();
        for device in devices.iter() {
            let (replies, _) = tokio::sync::mpsc::channel(1);
            device
                .sender
                .try_send(ToDevice::Invite {
                    call_sid: "CA1".into(),
                    from: "+15550100".into(),
                    to: format!("client:{who}"),
                    sdp: "v=0".into(),
                    parameters: Vec::new(),
                    replies,
                })
                .unwrap();
        }
        devices.len()
    }
    let registry = Registry::default();
    let (guard, mut queue) = connect(&registry, "alice");
    guard.set_incoming(true).unwrap();
    assert_eq!(ring(&registry, guard.identity()).await, 1);
    assert!(
        matches!(queue.try_recv(), Some(ToDevice::Invite { call_sid, .. }) if call_sid == "CA1")
    );
    let busy = PresenceStore::mark_busy(&registry, guard.identity(), guard.device_id())
        .await
        .unwrap();
    assert!(busy.is_some());
    assert_eq!(ring(&registry, guard.identity()).await, 0);
    let status = PresenceStore::status_of(&registry, guard.identity())
        .await
        .unwrap();
    assert_eq!(status.status, PresenceStatus::Busy);
    assert_eq!(
        PresenceStore::online_identities(&registry).await.unwrap(),
        [identity("alice")]
    );
}

#[test]
fn the_reachable_list_follows_every_change() {
    // A model of each device (incoming, chosen status, calls) driven by a fixed pseudo-random
    // sequence; after every step the registry's reachable list must match the model's.
    struct Model {
        guard: DeviceGuard,
        _queue: DeviceReceiver,
        incoming: bool,
        status: Status,
        calls: Vec<BusyGuard>,
    }
    let registry = Registry::default();
    let alice = identity("alice");
    let mut devices: Vec<Model> = Vec::new();
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    for step in 0..3_000 {
        // xorshift64: deterministic, no extra dependency.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let choice = state % 7;
        let pick = (state >> 8) as usize % devices.len().max(1);
        match choice {
            0 if devices.len() < 10 => {
                let (guard, queue) = connect(&registry, "alice");
                devices.push(Model {
                    guard,
                    _queue: queue,
                    incoming: false,
                    status: Status::Available,
                    calls: Vec::new(),
                });
            }
            1 if !devices.is_empty() => {
                devices.remove(pick);
            }
            2 if !devices.is_empty() => {
                let incoming = state & 0x100 != 0;
                devices[pick].guard.set_incoming(incoming).unwrap();
                devices[pick].incoming = incoming;
            }
            3 if !devices.is_empty() => {
                let status = [Status::Available, Status::Away, Status::Busy, Status::Dnd]
                    [(state >> 20) as usize % 4];
                devices[pick].guard.set_status(status);
                devices[pick].status = status;
            }
            4 if !devices.is_empty() => {
                let id = devices[pick].guard.device_id();
                let call = registry.mark_busy(&alice, id).unwrap();
                devices[pick].calls.push(call);
            }
            5 if !devices.is_empty() => {
                devices[pick].calls.pop();
            }
            _ => {}
        }
        let expected: Vec<DeviceId> = devices
            .iter()
            .filter(|model| {
                model.incoming
                    && model.calls.is_empty()
                    && matches!(model.status, Status::Available | Status::Away)
            })
            .map(|model| model.guard.device_id())
            .collect();
        let actual: Vec<DeviceId> = registry
            .reachable_devices(&alice)
            .iter()
            .map(|reachable| reachable.device_id)
            .collect();
        assert_eq!(actual, expected, "step {step}");
    }
}

#[test]
fn many_threads_connecting_and_leaving_keep_the_invariants() {
    const THREADS: usize = 4;
    const ROUNDS: usize = 2_000;
    let registry = Registry::new(Config {
        max_devices_per_identity: 3,
        max_subscriptions_per_device: 10,
    });
    let names: Vec<Identity> = ["a", "b", "c", "d", "e"]
        .into_iter()
        .map(identity)
        .collect();
    std::thread::scope(|scope| {
        for thread in 0..THREADS {
            let registry = registry.clone();
            let names = names.clone();
            scope.spawn(move || {
                let mut held: Vec<(DeviceGuard, DeviceReceiver)> = Vec::new();
                for round in 0..ROUNDS {
                    let name = &names[(thread * 7 + round * 3) % names.len()];
                    let (sender, receiver) = channel(4);
                    match registry.connect(name.clone(), true, sender, start()) {
                        Ok(mut guard) => {
                            guard.set_incoming(round % 2 == 0).unwrap();
                            let watched = &names[(round + thread) % names.len()];
                            guard.subscribe(std::slice::from_ref(watched)).unwrap();
                            let call = registry.mark_busy(name, guard.device_id());
                            guard.set_status(if round % 3 == 0 {
                                Status::Away
                            } else {
                                Status::Available
                            });
                            drop(call);
                            held.push((guard, receiver));
                        }
                        Err(error) => assert_eq!(error, RegistryError::TooManyDevices { limit: 3 }),
                    }
                    for name in &names {
                        assert!(registry.status_of(name).devices.len() <= 3);
                    }
                    if !held.is_empty() && (held.len() > 2 || round % 5 == 0) {
                        let index = round % held.len();
                        held.swap_remove(index);
                    }
                }
            });
        }
    });
    assert_eq!(registry.metrics().devices_online, 0);
    assert_eq!(registry.metrics().identities_online, 0);
    assert!(registry.online_identities().is_empty());
    assert_eq!(
        registry.shared.identities.len(),
        0,
        "every entry cleaned up"
    );
}
