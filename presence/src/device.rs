//! What is sent to a connected device, and the bounded channel it travels on.
//!
//! Each WebSocket connection owns one [`DeviceReceiver`]; the registry (presence events) and the
//! router (call offers) hold clones of its [`DeviceSender`]. Sending never waits: a full queue
//! means the client reads too slowly, the event is dropped, and the receiver is told through
//! [`DeviceReceiver::overflowed`] so that the gateway closes the connection instead of letting
//! memory grow or the client's view silently go stale.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde::{Serialize, Serializer};
use tokio::sync::{mpsc, Notify};

use crate::resource::PresenceResource;

/// A connected device: 16 hexadecimal digits, random, unique among connected devices.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId(u64);

/// An event for one device: the server → client messages that are not replies to the client.
#[derive(Debug, Clone)]
pub enum ToDevice {
    /// Offer a call (`invite`). The device answers through [`ToDevice::Invite::replies`].
    Invite {
        /// The CallSid of the device's own leg; the client echoes it in its replies.
        call_sid: String,
        /// The caller, as the client should show it.
        from: String,
        /// Who was called (`client:alice` style or a number), as the client should show it.
        to: String,
        /// The SDP offer, opaque to presence.
        sdp: String,
        /// Custom parameters for the client (`<Client><Parameter>`), in order.
        parameters: Vec<(String, String)>,
        /// Where the gateway sends the device's `ringing`/`answer`/`reject`/`hangup`/`dtmf` for
        /// this call, and [`CallEvent::Gone`] if the device disconnects first.
        replies: mpsc::Sender<CallReply>,
    },
    /// The offer was withdrawn before the device answered (`cancel`).
    Cancel {
        /// The CallSid of the offered leg.
        call_sid: String,
    },
    /// The call ended on the far side (`hangup`).
    Hangup {
        /// The CallSid of the device's leg.
        call_sid: String,
        /// Why, in a word (`completed`, `busy`, `failed`...).
        reason: String,
    },
    /// A subscribed identity's presence changed, or its current presence on `subscribe`.
    Presence(Arc<PresenceResource>),
}

/// A device's reply about one offered call, for the router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallReply {
    /// The device that replied.
    pub device_id: DeviceId,
    /// The CallSid from the `invite`.
    pub call_sid: String,
    /// What the device said.
    pub event: CallEvent,
}

/// What a device said about an offered call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallEvent {
    /// The device is alerting its user (`ringing`).
    Ringing,
    /// The user answered, with the SDP answer (`answer`).
    Answer {
        /// The SDP answer, opaque to presence.
        sdp: String,
    },
    /// The user declined (`reject`).
    Reject,
    /// The user hung up an answered call (`hangup`).
    Hangup,
    /// The user pressed keys during the call (`dtmf`).
    Dtmf {
        /// The digits, `0-9 * # A-D`.
        digits: String,
    },
    /// The device disconnected while the call was offered or up.
    Gone,
}

/// Why an event could not be queued for a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The device's queue is full: it reads too slowly. The event is dropped and the
    /// connection is told to close.
    #[error("device queue full")]
    Full,
    /// The connection is gone.
    #[error("device disconnected")]
    Closed,
}

/// The sending side of a device's queue. Clones share the queue.
///
/// One `Arc` around the tokio sender: a clone (the registry hands one out per reachable device
/// per call offer) is a single reference-count increment on one small allocation, rather than
/// touching the channel's own counters, which live on other cache lines.
#[derive(Clone)]
pub struct DeviceSender {
    queue: Arc<Queue>,
}

struct Queue {
    // Boxed: the channel reserves its slots up front per connection, and an idle device must be
    // cheap (a 128-byte slot × 32 was 4 KiB of every connection; a box is 8 bytes).
    events: mpsc::Sender<Box<ToDevice>>,
    overflow: Arc<Overflow>,
}

/// The receiving side of a device's queue, owned by its connection.
pub struct DeviceReceiver {
    events: mpsc::Receiver<Box<ToDevice>>,
    overflow: Arc<Overflow>,
}

/// A queue for one device holding at most `capacity` events (at least 1).
pub fn channel(capacity: usize) -> (DeviceSender, DeviceReceiver) {
    let (sender, receiver) = mpsc::channel(capacity.max(1));
    let overflow = Arc::new(Overflow::default());
    (
        DeviceSender {
            queue: Arc::new(Queue {
                events: sender,
                overflow: Arc::clone(&overflow),
            }),
        },
        DeviceReceiver {
            events: receiver,
            overflow,
        },
    )
}

impl DeviceId {
    /// A new random id.
    pub fn random() -> DeviceId {
        DeviceId(rand::random())
    }

    /// The id as a number (the text form is its 16 hexadecimal digits).
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl From<u64> for DeviceId {
    fn from(value: u64) -> Self {
        DeviceId(value)
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{:016x}", self.0)
    }
}

impl fmt::Debug for DeviceId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "DeviceId({:016x})", self.0)
    }
}

/// The text is not 16 hexadecimal digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a device id is 16 hexadecimal digits")]
pub struct DeviceIdError;

impl FromStr for DeviceId {
    type Err = DeviceIdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.len() != 16 || !text.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            return Err(DeviceIdError);
        }
        u64::from_str_radix(text, 16)
            .map(DeviceId)
            .map_err(|_| DeviceIdError)
    }
}

impl Serialize for DeviceId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl DeviceSender {
    /// Queues `event` without waiting. On [`SendError::Full`] the receiver is told it overflowed.
    pub fn try_send(&self, event: ToDevice) -> Result<(), SendError> {
        match self.queue.events.try_send(Box::new(event)) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.queue.overflow.raise();
                Err(SendError::Full)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(SendError::Closed),
        }
    }

    /// Whether the connection has dropped its receiver.
    pub fn is_closed(&self) -> bool {
        self.queue.events.is_closed()
    }

    /// Whether both senders feed the same queue.
    pub fn same_channel(&self, other: &DeviceSender) -> bool {
        self.queue.events.same_channel(&other.queue.events)
    }
}

impl fmt::Debug for DeviceSender {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("DeviceSender")
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl DeviceReceiver {
    /// The next event; `None` once every sender is dropped.
    pub async fn recv(&mut self) -> Option<ToDevice> {
        self.events.recv().await.map(|event| *event)
    }

    /// The next event if one is queued.
    pub fn try_recv(&mut self) -> Option<ToDevice> {
        self.events.try_recv().ok().map(|event| *event)
    }

    /// Completes once an event was dropped because the queue was full (at once if that already
    /// happened). The gateway selects on it next to [`DeviceReceiver::recv`] and closes the
    /// connection: a client that missed an event has a wrong view of calls or presence.
    pub async fn overflowed(&self) {
        loop {
            let notified = self.overflow.notify.notified();
            if self.has_overflowed() {
                return;
            }
            notified.await;
        }
    }

    /// Whether an event was dropped because the queue was full.
    pub fn has_overflowed(&self) -> bool {
        self.overflow.raised.load(Ordering::Acquire)
    }
}

impl fmt::Debug for DeviceReceiver {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("DeviceReceiver")
            .field("overflowed", &self.has_overflowed())
            .finish()
    }
}

/// The sticky "an event was dropped" flag and its wake-up.
#[derive(Default)]
struct Overflow {
    raised: AtomicBool,
    notify: Notify,
}

impl Overflow {
    fn raise(&self) {
        self.raised.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cancel(call_sid: &str) -> ToDevice {
        ToDevice::Cancel {
            call_sid: call_sid.to_owned(),
        }
    }

    #[test]
    fn device_ids_print_as_16_hex_digits_and_parse_back() {
        let id = DeviceId::from(0x00ab_cdef_0123_4567);
        assert_eq!(id.to_string(), "00abcdef01234567");
        assert_eq!("00abcdef01234567".parse::<DeviceId>(), Ok(id));
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"00abcdef01234567\"");
        for bad in [
            "",
            "abc",
            "00abcdef0123456g",
            "+0abcdef01234567",
            "00abcdef012345678",
        ] {
            assert_eq!(bad.parse::<DeviceId>(), Err(DeviceIdError), "{bad:?}");
        }
        assert_ne!(DeviceId::random(), DeviceId::random());
    }

    #[test]
    fn a_full_queue_drops_the_event_and_raises_overflow() {
        let (sender, mut receiver) = channel(2);
        sender.try_send(cancel("CA1")).unwrap();
        sender.try_send(cancel("CA2")).unwrap();
        assert!(!receiver.has_overflowed());
        assert_eq!(sender.try_send(cancel("CA3")), Err(SendError::Full));
        assert!(receiver.has_overflowed());
        let mut received = Vec::new();
        while let Some(ToDevice::Cancel { call_sid }) = receiver.try_recv() {
            received.push(call_sid);
        }
        assert_eq!(received, ["CA1", "CA2"]);
    }

    #[test]
    fn sending_to_a_dropped_receiver_is_closed() {
        let (sender, receiver) = channel(1);
        drop(receiver);
        assert!(sender.is_closed());
        assert_eq!(sender.try_send(cancel("CA1")), Err(SendError::Closed));
    }

    #[tokio::test]
    async fn overflowed_wakes_a_waiting_connection() {
        let (sender, receiver) = channel(1);
        let waiter = tokio::spawn(async move {
            receiver.overflowed().await;
            receiver.has_overflowed()
        });
        tokio::task::yield_now().await;
        sender.try_send(cancel("CA1")).unwrap();
        assert_eq!(sender.try_send(cancel("CA2")), Err(SendError::Full));
        assert!(waiter.await.unwrap());
    }
}
