//! The calls offered to one connection: CallSid → the router's reply channel.
//!
//! Owned by the connection task alone (no lock). A call is remembered from its `invite` until
//! the client rejects or hangs up, or the router cancels or hangs up. Dropping the table (the
//! connection ended, whatever the cause) tells the router [`CallEvent::Gone`] for every call
//! still open, so that no leg waits for a device that is not there.
//!
//! Replies are queued with `try_send`: the connection never waits on the router. The router
//! sizes each call's channel for the handful of replies a call produces; a reply that finds it
//! full is dropped and logged.

use std::collections::HashMap;

use tokio::sync::mpsc;

use crate::device::{CallEvent, CallReply, DeviceId};

/// Calls one connection may have open at once; an `invite` beyond is refused with
/// [`CallEvent::Reject`] without reaching the client.
pub(crate) const MAX_CALLS_PER_CONNECTION: usize = 32;

/// The open calls of one connection.
pub(crate) struct Calls {
    device_id: DeviceId,
    open: HashMap<String, mpsc::Sender<CallReply>>,
}

/// The connection was not offered this CallSid, or the call already ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UnknownCall;

/// The connection has [`MAX_CALLS_PER_CONNECTION`] calls open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooManyCalls;

impl Calls {
    pub(crate) fn new(device_id: DeviceId) -> Calls {
        Calls {
            device_id,
            open: HashMap::new(),
        }
    }

    /// Remembers an offered call. Over the limit, the router is told `Reject` at once.
    pub(crate) fn offer(
        &mut self,
        call_sid: &str,
        replies: mpsc::Sender<CallReply>,
    ) -> Result<(), TooManyCalls> {
        if self.open.len() >= MAX_CALLS_PER_CONNECTION && !self.open.contains_key(call_sid) {
            self.send(&replies, call_sid, CallEvent::Reject);
            return Err(TooManyCalls);
        }
        self.open.insert(call_sid.to_owned(), replies);
        Ok(())
    }

    /// Forgets a call the router cancelled or hung up; whether it was open.
    pub(crate) fn withdraw(&mut self, call_sid: &str) -> bool {
        self.open.remove(call_sid).is_some()
    }

    /// Passes the client's `event` about `call_sid` to the router. `Reject` and `Hangup` end
    /// the call here.
    pub(crate) fn reply(&mut self, call_sid: &str, event: CallEvent) -> Result<(), UnknownCall> {
        let ends = matches!(event, CallEvent::Reject | CallEvent::Hangup);
        let replies = if ends {
            self.open.remove(call_sid).ok_or(UnknownCall)?
        } else {
            self.open.get(call_sid).ok_or(UnknownCall)?.clone()
        };
        if !self.send(&replies, call_sid, event) {
            // The router dropped its end: the call is over for it, so forget it here too.
            self.open.remove(call_sid);
        }
        Ok(())
    }

    /// Calls open now.
    pub(crate) fn len(&self) -> usize {
        self.open.len()
    }

    /// Queues one reply; false if the router's channel is closed.
    fn send(&self, replies: &mpsc::Sender<CallReply>, call_sid: &str, event: CallEvent) -> bool {
        let reply = CallReply {
            device_id: self.device_id,
            call_sid: call_sid.to_owned(),
            event,
        };
        match replies.try_send(reply) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(reply)) => {
                tracing::warn!(
                    call_sid = %reply.call_sid,
                    event = ?reply.event,
                    "router's reply channel full; reply dropped"
                );
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

impl Drop for Calls {
    fn drop(&mut self) {
        for (call_sid, replies) in std::mem::take(&mut self.open) {
            self.send(&replies, &call_sid, CallEvent::Gone);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(receiver: &mut mpsc::Receiver<CallReply>) -> Vec<(String, CallEvent)> {
        let mut events = Vec::new();
        while let Ok(reply) = receiver.try_recv() {
            assert_eq!(reply.device_id, DeviceId::from(7));
            events.push((reply.call_sid, reply.event));
        }
        events
    }

    #[test]
    fn replies_reach_the_router_until_the_call_ends() {
        let (replies, mut router) = mpsc::channel(8);
        let mut calls = Calls::new(DeviceId::from(7));
        calls.offer("CA1", replies).unwrap();
        calls.reply("CA1", CallEvent::Ringing).unwrap();
        calls
            .reply("CA1", CallEvent::Answer { sdp: "v=0".into() })
            .unwrap();
        calls.reply("CA1", CallEvent::Hangup).unwrap();
        assert_eq!(calls.reply("CA1", CallEvent::Ringing), Err(UnknownCall));
        assert_eq!(calls.reply("CA2", CallEvent::Ringing), Err(UnknownCall));
        assert_eq!(
            events(&mut router),
            [
                ("CA1".to_owned(), CallEvent::Ringing),
                ("CA1".to_owned(), CallEvent::Answer { sdp: "v=0".into() }),
                ("CA1".to_owned(), CallEvent::Hangup),
            ]
        );
        assert_eq!(calls.len(), 0);
    }

    #[test]
    fn dropping_the_table_reports_open_calls_gone() {
        let (first, mut first_router) = mpsc::channel(8);
        let (second, mut second_router) = mpsc::channel(8);
        let (third, mut third_router) = mpsc::channel(8);
        let mut calls = Calls::new(DeviceId::from(7));
        calls.offer("CA1", first).unwrap();
        calls.offer("CA2", second).unwrap();
        calls.offer("CA3", third).unwrap();
        calls.reply("CA2", CallEvent::Reject).unwrap();
        assert!(calls.withdraw("CA3"));
        assert!(!calls.withdraw("CA3"));
        drop(calls);
        assert_eq!(
            events(&mut first_router),
            [("CA1".to_owned(), CallEvent::Gone)]
        );
        assert_eq!(
            events(&mut second_router),
            [("CA2".to_owned(), CallEvent::Reject)]
        );
        assert_eq!(events(&mut third_router), []);
    }

    #[test]
    fn offers_beyond_the_limit_are_rejected_for_the_router() {
        let (replies, mut router) = mpsc::channel(MAX_CALLS_PER_CONNECTION + 4);
        let mut calls = Calls::new(DeviceId::from(7));
        for index in 0..MAX_CALLS_PER_CONNECTION {
            calls.offer(&format!("CA{index}"), replies.clone()).unwrap();
        }
        assert_eq!(calls.offer("CAx", replies.clone()), Err(TooManyCalls));
        assert_eq!(events(&mut router), [("CAx".to_owned(), CallEvent::Reject)]);
        assert_eq!(calls.len(), MAX_CALLS_PER_CONNECTION);
    }

    #[test]
    fn a_router_that_left_ends_the_call() {
        let (replies, router) = mpsc::channel(8);
        let mut calls = Calls::new(DeviceId::from(7));
        calls.offer("CA1", replies).unwrap();
        drop(router);
        calls.reply("CA1", CallEvent::Ringing).unwrap();
        assert_eq!(calls.len(), 0);
    }
}
