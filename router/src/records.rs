//! The call table the HTTP API and `/metrics` read: live calls, the most recent ended ones,
//! and counters by outcome. Each call task writes its own record (one owner); readers take
//! snapshots. Bounded: at most [`RECENT_CALLS`] ended calls are kept, oldest dropped first.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use compact_str::{CompactString, ToCompactString};
use dashmap::DashMap;
use serde::Serialize;

use crate::call::CallStatus;
use crate::sid::CallSid;

/// Ended calls kept for `GET /v1/calls`.
pub const RECENT_CALLS: usize = 1000;

/// One call as the HTTP API shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CallRecord {
    /// The call's SID.
    pub sid: CallSid,
    /// The caller.
    pub from: CompactString,
    /// The dialled party.
    pub to: CompactString,
    /// The call's status.
    pub status: CallStatus,
    /// Always `inbound` for now: calls enter through the SIP edge.
    pub direction: &'static str,
    /// When the INVITE arrived (RFC 3339).
    pub start_time: CompactString,
    /// When it was answered.
    pub answer_time: Option<CompactString>,
    /// When it ended.
    pub end_time: Option<CompactString>,
    /// The legs dialled from it.
    pub legs: Vec<LegRecord>,
}

impl CallRecord {
    /// Whether `later`, a later state of the same call, differs from this one. Once a call is
    /// listed only its status, its answer and end times (each set once) and its legs change,
    /// so only those are compared: the call's task asks after every event it handles.
    pub fn differs_from(&self, later: &CallRecord) -> bool {
        debug_assert!(self.sid == later.sid && self.start_time == later.start_time);
        self.status != later.status
            || self.answer_time.is_some() != later.answer_time.is_some()
            || self.end_time.is_some() != later.end_time.is_some()
            || self.legs.len() != later.legs.len()
            || self
                .legs
                .iter()
                .zip(&later.legs)
                .any(|(before, after)| before.status != after.status)
    }
}

/// One dialled leg.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LegRecord {
    /// The leg's SID (`DialCallSid`).
    pub sid: CallSid,
    /// Who it rang: `client:alice` or a SIP URI.
    pub to: CompactString,
    /// `ringing`, `in-progress`, `completed`, `busy`, `no-answer`, `canceled` or `failed`.
    pub status: &'static str,
}

/// The call table. Cloning shares it.
#[derive(Debug, Clone, Default)]
pub struct CallRecords {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Shared with the call task, which keeps what it published last to compare with.
    live: DashMap<CallSid, Arc<CallRecord>>,
    recent: Mutex<VecDeque<CallRecord>>,
    outcomes: Outcomes,
    overload: AtomicU64,
}

/// Calls ended, by final status (since start).
#[derive(Debug, Default)]
struct Outcomes {
    completed: AtomicU64,
    busy: AtomicU64,
    no_answer: AtomicU64,
    canceled: AtomicU64,
    failed: AtomicU64,
}

/// Counters for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Metrics {
    /// Calls live now.
    pub active: u64,
    /// Ended calls by final status, in the order of [`Metrics::OUTCOMES`].
    pub ended: [u64; 5],
    /// INVITEs refused with 503 because the call limit was reached.
    pub refused_overload: u64,
}

impl Metrics {
    /// The final statuses [`Metrics::ended`] counts, as labelled in `/metrics`.
    pub const OUTCOMES: [&'static str; 5] =
        ["completed", "busy", "no-answer", "canceled", "failed"];
}

impl CallRecords {
    /// Inserts or replaces a live call's record.
    pub fn update(&self, record: Arc<CallRecord>) {
        self.inner.live.insert(record.sid.clone(), record);
    }

    /// Moves a call to the recent list with its final record and counts its outcome.
    pub fn finish(&self, record: CallRecord) {
        self.inner.live.remove(&record.sid);
        let counter = match record.status {
            CallStatus::Completed | CallStatus::InProgress | CallStatus::Ringing => {
                &self.inner.outcomes.completed
            }
            CallStatus::Busy => &self.inner.outcomes.busy,
            CallStatus::NoAnswer => &self.inner.outcomes.no_answer,
            CallStatus::Canceled => &self.inner.outcomes.canceled,
            CallStatus::Failed => &self.inner.outcomes.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let mut recent = self.recent();
        if recent.len() >= RECENT_CALLS {
            recent.pop_front();
        }
        recent.push_back(record);
    }

    /// Counts an INVITE refused because the call limit was reached.
    pub fn count_overload(&self) {
        self.inner.overload.fetch_add(1, Ordering::Relaxed);
    }

    /// Calls live now.
    pub fn active(&self) -> usize {
        self.inner.live.len()
    }

    /// A call by SID, live or recent.
    pub fn get(&self, sid: &str) -> Option<CallRecord> {
        let sid = CallSid::parse(sid)?;
        if let Some(record) = self.inner.live.get(&sid) {
            return Some(CallRecord::clone(&record));
        }
        self.recent().iter().rev().find(|r| r.sid == sid).cloned()
    }

    /// Live calls (oldest first), then recent ones (newest first).
    pub fn list(&self) -> Vec<CallRecord> {
        let mut live: Vec<CallRecord> = self
            .inner
            .live
            .iter()
            .map(|r| CallRecord::clone(&r))
            .collect();
        live.sort_by(|a, b| a.start_time.cmp(&b.start_time));
        live.extend(self.recent().iter().rev().cloned());
        live
    }

    /// Counters for `/metrics`.
    pub fn metrics(&self) -> Metrics {
        let outcomes = &self.inner.outcomes;
        Metrics {
            active: self.inner.live.len() as u64,
            ended: [
                &outcomes.completed,
                &outcomes.busy,
                &outcomes.no_answer,
                &outcomes.canceled,
                &outcomes.failed,
            ]
            .map(|counter| counter.load(Ordering::Relaxed)),
            refused_overload: self.inner.overload.load(Ordering::Relaxed),
        }
    }

    fn recent(&self) -> std::sync::MutexGuard<'_, VecDeque<CallRecord>> {
        // Plain data, never held across an await: a poisoned lock still holds a usable list.
        self.inner
            .recent
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// RFC 3339 UTC text of a wall-clock time, to the millisecond.
pub fn rfc3339(time: SystemTime) -> CompactString {
    // 24 characters: held inline, so copying a record's times allocates nothing.
    humantime::format_rfc3339_millis(time).to_compact_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn record(n: u8, status: CallStatus) -> CallRecord {
        CallRecord {
            sid: CallSid::parse(&format!("CA{n:032x}")).unwrap(),
            from: "+1".into(),
            to: "+2".into(),
            status,
            direction: "inbound",
            start_time: format!("2026-01-01T00:00:{n:02}.000Z").into(),
            answer_time: None,
            end_time: None,
            legs: vec![],
        }
    }

    #[test]
    fn rfc3339_of_known_instants() {
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        // Held inline: publishing a record copies its times without allocating.
        assert!(!rfc3339(SystemTime::now()).is_heap_allocated());
        // 2026-11-24T08:30:15.250Z = 1795509015.250 s (computed with `date -u -d`).
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_509_015_250);
        assert_eq!(rfc3339(t), "2026-11-24T08:30:15.250Z");
        // A leap day.
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(t), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn live_then_recent_with_outcome_counters() {
        let records = CallRecords::default();
        records.update(Arc::new(record(1, CallStatus::Ringing)));
        records.update(Arc::new(record(2, CallStatus::InProgress)));
        assert_eq!(records.active(), 2);
        records.finish(record(1, CallStatus::Busy));
        assert_eq!(records.active(), 1);
        let sid1 = record(1, CallStatus::Busy).sid;
        assert_eq!(records.get(sid1.as_str()).unwrap().status, CallStatus::Busy);
        assert!(records.get("CAnope").is_none());
        let listed: Vec<_> = records.list().into_iter().map(|r| r.status).collect();
        assert_eq!(listed, [CallStatus::InProgress, CallStatus::Busy]);
        let metrics = records.metrics();
        assert_eq!(metrics.active, 1);
        assert_eq!(metrics.ended, [0, 1, 0, 0, 0]);
    }

    #[test]
    fn a_record_differs_from_its_later_state_exactly_when_a_field_that_changes_did() {
        let first = record(1, CallStatus::Ringing);
        let mut later = first.clone();
        assert!(!first.differs_from(&later));
        later.status = CallStatus::InProgress;
        assert!(first.differs_from(&later));
        let mut later = first.clone();
        later.answer_time = Some("2026-01-01T00:00:02.000Z".into());
        assert!(first.differs_from(&later));
        let mut later = first.clone();
        later.end_time = Some("2026-01-01T00:00:03.000Z".into());
        assert!(first.differs_from(&later));
        let mut later = first.clone();
        later.legs.push(LegRecord {
            sid: CallSid::random(),
            to: "client:alice".into(),
            status: "ringing",
        });
        assert!(first.differs_from(&later));
        let with_leg = later.clone();
        later.legs[0].status = "in-progress";
        assert!(with_leg.differs_from(&later));
        assert!(!later.differs_from(&later.clone()));
    }

    #[test]
    fn recent_calls_are_bounded() {
        let records = CallRecords::default();
        for n in 0..(RECENT_CALLS + 5) {
            let mut r = record(0, CallStatus::Completed);
            r.sid = CallSid::parse(&format!("CA{n:032x}")).unwrap();
            records.finish(r);
        }
        assert_eq!(records.list().len(), RECENT_CALLS);
        assert!(
            records.get(&format!("CA{:032x}", 0)).is_none(),
            "oldest dropped"
        );
        assert_eq!(records.metrics().ended[0], (RECENT_CALLS + 5) as u64);
    }
}
