//! A timing wheel for the endpoint's transaction deadlines (sans-IO: time is an argument).
//!
//! A busy endpoint holds ~100,000 deadlines, nearly all of them the 32 s linger timers of
//! finished transactions (RFC 3261 §17: Timers D, H, J, K, M). In a binary heap every pop
//! sifted through 17 levels of them, a cache miss each; here a deadline goes into the slot of
//! its millisecond and a slot is emptied in one go when its millisecond has passed, so
//! inserting and expiring cost the same however many deadlines are queued.
//!
//! Deadlines never fire early, and at most one tick late: a deadline is put in the first tick
//! that does not precede it, and [`Wheel::poll_timeout`] asks to be woken at that tick. One turn of the wheel spans [`SPAN`] ticks; a deadline further out
//! goes in the last slot of the turn and is put back, nearer, when that slot is emptied.

use std::time::{Duration, Instant};

/// The wheel's resolution, a millisecond. SIP timers are hundreds of milliseconds and more
/// (T1 = 500 ms); one millisecond late is well within what RFC 3261's timers tolerate.
const TICK_NANOS: u128 = 1_000_000;

/// Slots in one turn of the wheel: 65.5 s at 1 ms, more than 64·T1 with T1 up to 1 s.
const SPAN: u64 = 1 << 16;

/// Words of the bitmap of non-empty slots.
const WORDS: usize = (SPAN / 64) as usize;

/// Emptied slot buffers kept for the next slots to fill, and the largest capacity kept: a
/// slot filled from nothing cost one to three allocations for every millisecond of deadlines,
/// and this bounds what the reuse holds (tens of kilobytes).
const SPARE_BUFFERS: usize = 64;
const SPARE_CAPACITY: usize = 64;

/// Deadlines of items `T`, expired in no particular order within a tick.
pub(super) struct Wheel<T> {
    origin: Instant,
    /// The first tick whose slot has not been emptied.
    next: u64,
    slots: Vec<Vec<(Instant, T)>>,
    /// One bit per slot that holds anything.
    occupied: Vec<u64>,
    /// The earliest occupied tick, if any deadline is queued.
    earliest: Option<u64>,
    /// The slot being handed out by [`Wheel::pop`], taken out of the wheel: a slot holds
    /// memory only while it holds deadlines. (Swapping buffers instead kept every capacity
    /// ever reached and passed the largest around, until all 65,536 slots held one: RSS grew
    /// for minutes under steady load.)
    expiring: Vec<(Instant, T)>,
    /// Empty buffers of emptied slots, for slots about to fill (see [`SPARE_BUFFERS`]).
    spare: Vec<Vec<(Instant, T)>>,
    len: usize,
}

impl<T> Wheel<T> {
    /// An empty wheel whose tick 0 is `origin`.
    pub(super) fn new(origin: Instant) -> Self {
        Self {
            origin,
            next: 0,
            slots: (0..SPAN).map(|_| Vec::new()).collect(),
            occupied: vec![0; WORDS],
            earliest: None,
            expiring: Vec::new(),
            spare: Vec::new(),
            len: 0,
        }
    }

    /// Queues `item` to expire at `at` (or, if `at` has passed, at the next pop).
    pub(super) fn insert(&mut self, at: Instant, item: T) {
        let tick = self
            .tick_at_or_after(at)
            .clamp(self.next, self.next + SPAN - 1);
        let slot = (tick % SPAN) as usize;
        let deadlines = &mut self.slots[slot];
        if deadlines.capacity() == 0 {
            if let Some(buffer) = self.spare.pop() {
                *deadlines = buffer;
            }
        }
        deadlines.push((at, item));
        self.occupied[slot / 64] |= 1 << (slot % 64);
        if self.earliest.is_none_or(|earliest| tick < earliest) {
            self.earliest = Some(tick);
        }
        self.len += 1;
    }

    /// Tells the wheel the present: its turn starts at `now`'s tick if nothing queued is due
    /// before (after an idle spell its turn would otherwise still start where it stopped, and
    /// a new deadline less than a turn ahead of `now` could be more than a turn ahead of that:
    /// it would wait in the last slot and wake its owner once for nothing). Call it before
    /// inserting deadlines relative to `now`.
    pub(super) fn advance(&mut self, now: Instant) {
        if !self.expiring.is_empty() {
            return;
        }
        let present = self.tick_containing(now);
        // Every slot from `next` up to the earliest occupied one is empty: `next` may move
        // anywhere up to it.
        let limit = self
            .earliest
            .map_or(present, |earliest| earliest.min(present));
        self.next = self.next.max(limit);
    }

    /// When the earliest queued deadline's tick ends: call [`Wheel::pop`] then.
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        if !self.expiring.is_empty() {
            // A pop stopped halfway through a tick that has passed.
            return Some(self.instant_of(self.next.saturating_sub(1)));
        }
        self.earliest.map(|tick| self.instant_of(tick))
    }

    /// An item whose deadline is at or before `now`, if any.
    pub(super) fn pop(&mut self, now: Instant) -> Option<T> {
        loop {
            if let Some((_, item)) = self.expiring.pop() {
                self.len -= 1;
                return Some(item);
            }
            // The slot of a tick holds the deadlines of the millisecond that ends with it:
            // once that millisecond has begun, some may be due.
            let tick = self.earliest?;
            if self.instant_of(tick.saturating_sub(1)) > now {
                return None;
            }
            let slot = (tick % SPAN) as usize;
            if self.instant_of(tick) <= now {
                // The whole millisecond has passed: the slot is emptied in one go.
                let emptied = std::mem::take(&mut self.slots[slot]);
                let used = std::mem::replace(&mut self.expiring, emptied);
                self.keep_spare(used);
            } else {
                // Part of it (a virtual clock's `now`): only what is due leaves the slot.
                let pending = &mut self.slots[slot];
                let mut index = 0;
                while index < pending.len() {
                    if pending[index].0 <= now {
                        self.expiring.push(pending.swap_remove(index));
                    } else {
                        index += 1;
                    }
                }
                if self.expiring.is_empty() {
                    return None;
                }
                if !self.slots[slot].is_empty() {
                    self.next = tick;
                    continue;
                }
            }
            self.occupied[slot / 64] &= !(1 << (slot % 64));
            self.next = tick + 1;
            self.earliest = self.next_occupied();
            // Deadlines beyond the turn they were queued in wait in its last slot: they are
            // put back, nearer.
            let mut index = 0;
            while index < self.expiring.len() {
                if self.expiring[index].0 > now {
                    let (at, item) = self.expiring.swap_remove(index);
                    self.len -= 1;
                    self.insert(at, item);
                } else {
                    index += 1;
                }
            }
        }
    }

    /// How many deadlines are queued.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.len
    }

    /// The first tick at or after `next` whose slot holds anything.
    /// Keeps an emptied buffer for reuse if there is room and it is not oversized.
    fn keep_spare(&mut self, mut buffer: Vec<(Instant, T)>) {
        buffer.clear();
        if buffer.capacity() > 0
            && buffer.capacity() <= SPARE_CAPACITY
            && self.spare.len() < SPARE_BUFFERS
        {
            self.spare.push(buffer);
        }
    }

    fn next_occupied(&self) -> Option<u64> {
        if self.len == self.expiring.len() {
            return None;
        }
        let start = (self.next % SPAN) as usize;
        // Scan the bitmap from `start` once around, a word at a time.
        for step in 0..=WORDS {
            let word = (start / 64 + step) % WORDS;
            let mut bits = self.occupied[word];
            if step == 0 {
                bits &= u64::MAX << (start % 64);
            } else if step == WORDS {
                bits &= !(u64::MAX << (start % 64));
            }
            if bits != 0 {
                let slot = word * 64 + bits.trailing_zeros() as usize;
                let ahead = (slot + SPAN as usize - start) % SPAN as usize;
                return Some(self.next + ahead as u64);
            }
        }
        None
    }

    /// The tick whose millisecond `now` falls in (its slot's deadlines are all at or before
    /// the end of that millisecond).
    fn tick_containing(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.origin);
        u64::try_from(since.as_nanos() / TICK_NANOS).unwrap_or(u64::MAX - SPAN)
    }

    fn tick_at_or_after(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.origin);
        let ticks = since.as_nanos().div_ceil(TICK_NANOS);
        u64::try_from(ticks).unwrap_or(u64::MAX - SPAN)
    }

    fn instant_of(&self, tick: u64) -> Instant {
        // Ticks come from real deadlines, so this cannot overflow; if it did, the deadline
        // would fire at once rather than never.
        self.origin
            .checked_add(Duration::from_millis(tick))
            .unwrap_or(self.origin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(wheel: &mut Wheel<u32>, now: Instant) -> Vec<u32> {
        let mut items = std::iter::from_fn(|| wheel.pop(now)).collect::<Vec<_>>();
        items.sort_unstable();
        items
    }

    #[test]
    fn emptied_slot_buffers_are_reused_and_their_number_bounded() {
        let origin = Instant::now();
        let mut wheel = Wheel::new(origin);
        let ms = |n: u64| origin + Duration::from_millis(n);
        for tick in 1..=200 {
            wheel.insert(ms(tick), tick as u32);
        }
        assert_eq!(drain(&mut wheel, ms(300)).len(), 200);
        assert_eq!(wheel.spare.len(), SPARE_BUFFERS, "kept, up to the bound");
        wheel.insert(ms(400), 1);
        assert_eq!(
            wheel.spare.len(),
            SPARE_BUFFERS - 1,
            "a filling slot takes one"
        );
        assert!(
            wheel
                .slots
                .iter()
                .filter(|slot| slot.capacity() > 0)
                .count()
                == 1
        );
    }

    #[test]
    fn deadlines_fire_at_their_tick_never_early() {
        let t0 = Instant::now();
        let mut wheel = Wheel::new(t0);
        wheel.insert(t0 + Duration::from_micros(1_500), 1);
        wheel.insert(t0 + Duration::from_millis(500), 2);
        wheel.insert(t0 + Duration::from_millis(2), 3);
        assert_eq!(wheel.len(), 3);
        assert_eq!(wheel.poll_timeout(), Some(t0 + Duration::from_millis(2)));
        assert_eq!(
            drain(&mut wheel, t0 + Duration::from_millis(1)),
            Vec::<u32>::new()
        );
        assert_eq!(drain(&mut wheel, t0 + Duration::from_millis(2)), vec![1, 3]);
        assert_eq!(wheel.poll_timeout(), Some(t0 + Duration::from_millis(500)));
        assert_eq!(
            drain(&mut wheel, t0 + Duration::from_millis(499)),
            Vec::<u32>::new()
        );
        assert_eq!(drain(&mut wheel, t0 + Duration::from_secs(9)), vec![2]);
        assert_eq!((wheel.len(), wheel.poll_timeout()), (0, None));
    }

    #[test]
    fn a_deadline_fires_when_it_is_due_within_its_tick() {
        let t0 = Instant::now();
        let mut wheel = Wheel::new(t0);
        let at = t0 + Duration::from_micros(4_000_300);
        wheel.insert(at, 1);
        wheel.insert(at + Duration::from_micros(200), 2);
        assert_eq!(
            wheel.poll_timeout(),
            Some(t0 + Duration::from_millis(4_001))
        );
        assert_eq!(
            drain(&mut wheel, at - Duration::from_micros(1)),
            Vec::<u32>::new()
        );
        assert_eq!(drain(&mut wheel, at), vec![1]);
        assert_eq!(drain(&mut wheel, at + Duration::from_micros(200)), vec![2]);
        assert_eq!(wheel.poll_timeout(), None);
    }

    #[test]
    fn a_passed_deadline_fires_at_the_next_pop() {
        let t0 = Instant::now();
        let mut wheel = Wheel::new(t0);
        wheel.insert(t0 + Duration::from_millis(10), 1);
        assert_eq!(drain(&mut wheel, t0 + Duration::from_millis(20)), vec![1]);
        // Tick 10 is gone: an insert for it (or earlier) goes in the next tick.
        wheel.insert(t0 + Duration::from_millis(5), 2);
        assert_eq!(wheel.poll_timeout(), Some(t0 + Duration::from_millis(11)));
        assert_eq!(drain(&mut wheel, t0 + Duration::from_millis(20)), vec![2]);
    }

    #[test]
    fn deadlines_beyond_a_turn_wait_and_fire_on_time() {
        let t0 = Instant::now();
        let mut wheel = Wheel::new(t0);
        let far = t0 + Duration::from_secs(200);
        wheel.insert(far, 7);
        wheel.insert(t0 + Duration::from_secs(64), 8);
        let mut now = t0;
        let mut fired = Vec::new();
        while let Some(at) = wheel.poll_timeout() {
            assert!(at >= now, "the wheel's time went backwards");
            now = at;
            while let Some(item) = wheel.pop(now) {
                fired.push((item, now));
            }
        }
        assert_eq!(fired, vec![(8, t0 + Duration::from_secs(64)), (7, far)]);
    }

    #[test]
    fn items_inserted_while_expiring_are_kept() {
        let t0 = Instant::now();
        let mut wheel = Wheel::new(t0);
        for i in 0..100 {
            wheel.insert(t0 + Duration::from_millis(i % 7), i as u32);
        }
        let now = t0 + Duration::from_millis(3);
        let mut fired = 0;
        while let Some(item) = wheel.pop(now) {
            fired += 1;
            // Re-armed for later, as transactions do while their timers fire.
            wheel.insert(now + Duration::from_millis(32_000), item);
        }
        assert_eq!(fired, (0..100).filter(|i| i % 7 <= 3).count());
        assert_eq!(wheel.len(), 100);
        assert_eq!(wheel.poll_timeout(), Some(t0 + Duration::from_millis(4)));
    }

    #[test]
    fn a_deadline_after_an_idle_spell_waits_in_its_own_slot() {
        let t0 = Instant::now();
        let mut wheel = Wheel::new(t0);
        // Idle for 100 s, then a deadline 65 s out: less than a turn from now, more than a
        // turn from where the wheel stopped.
        let now = t0 + Duration::from_secs(100);
        wheel.advance(now);
        let at = now + Duration::from_secs(65);
        wheel.insert(at, 1);
        assert_eq!(wheel.poll_timeout(), Some(at), "no early wake-up");
        assert_eq!(drain(&mut wheel, at), vec![1]);
        // A wheel with something queued moves its turn only up to it.
        wheel.insert(at + Duration::from_secs(10), 2);
        wheel.advance(at + Duration::from_secs(30));
        assert_eq!(drain(&mut wheel, at + Duration::from_secs(30)), vec![2]);
    }

    #[test]
    fn wrapping_around_the_wheel_keeps_order() {
        let t0 = Instant::now();
        let mut wheel = Wheel::new(t0);
        let mut now = t0;
        // Walk several turns with a deadline 40 s ahead each second.
        let mut expected = 0;
        for second in 0..200u32 {
            wheel.insert(now + Duration::from_secs(40), second);
            now += Duration::from_secs(1);
            for item in drain(&mut wheel, now) {
                assert_eq!(item, expected);
                expected += 1;
            }
        }
        // Deadlines at 40 s … 200 s have fired, those at 201 s … 239 s have not.
        assert_eq!(expected, 161);
        assert_eq!(wheel.len(), 39);
    }

    proptest::proptest! {
        /// Against a plain list: whatever the deadlines (up to 150 s out) and however time
        /// moves, each item fires exactly once, never before its deadline and at the latest
        /// one tick after it.
        #[test]
        fn fires_everything_once_on_time(
            steps in proptest::collection::vec((0u64..150_000_000, 0u64..3_000_000, 0usize..4), 1..200)
        ) {
            let t0 = Instant::now();
            let mut wheel = Wheel::new(t0);
            let mut now = t0;
            let mut queued: Vec<(Instant, u32)> = Vec::new();
            let (mut far, mut idle_wakes) = (0, 0);
            for (id, (ahead_us, advance_us, inserts)) in steps.into_iter().enumerate() {
                // As the endpoint does before handling anything.
                wheel.advance(now);
                for k in 0..inserts {
                    let at = now + Duration::from_micros(ahead_us / (k as u64 + 1));
                    let item = (id * 4 + k) as u32;
                    wheel.insert(at, item);
                    queued.push((at, item));
                    // A turn from `now`'s tick, give or take the tick `now` is in.
                    if at > now + Duration::from_millis(SPAN - 2) {
                        far += 1;
                    }
                }
                now += Duration::from_micros(advance_us);
                // The runtime wakes at the wheel's deadline when that comes first.
                if let Some(wake) = wheel.poll_timeout().filter(|wake| *wake < now) {
                    let fired = std::iter::from_fn(|| wheel.pop(wake)).collect::<Vec<_>>();
                    check(&mut queued, &fired, wake)?;
                }
                let fired = std::iter::from_fn(|| wheel.pop(now)).collect::<Vec<_>>();
                check(&mut queued, &fired, now)?;
            }
            while let Some(wake) = wheel.poll_timeout() {
                let fired = std::iter::from_fn(|| wheel.pop(wake)).collect::<Vec<_>>();
                // Only a deadline beyond a turn of the wheel wakes it early (to move nearer),
                // once per turn it is beyond.
                if fired.is_empty() {
                    idle_wakes += 1;
                    proptest::prop_assert!(idle_wakes <= 2 * far, "woken for nothing");
                }
                check(&mut queued, &fired, wake)?;
            }
            proptest::prop_assert!(queued.is_empty());
        }
    }

    /// Removes `fired` from `queued`, checking each was due at `now` and is there once, and
    /// that nothing due more than a tick ago is left.
    fn check(
        queued: &mut Vec<(Instant, u32)>,
        fired: &[u32],
        now: Instant,
    ) -> Result<(), proptest::test_runner::TestCaseError> {
        for item in fired {
            let index = queued.iter().position(|(_, queued)| queued == item);
            proptest::prop_assert!(index.is_some(), "{item} fired twice");
            let (at, _) = queued.swap_remove(index.unwrap_or_default());
            proptest::prop_assert!(at <= now, "{item} fired early");
        }
        let late = queued
            .iter()
            .find(|(at, _)| *at + Duration::from_millis(1) < now);
        proptest::prop_assert!(late.is_none(), "{late:?} overdue at {now:?}");
        Ok(())
    }
}
