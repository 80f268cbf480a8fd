//! Wait queues: where an allocation that must sleep waits for memory
//! (cf. `include/linux/wait.h`, `kernel/sched/wait.c`).
//!
//! The kernel has no threads to put to sleep: a sleeping request is an
//! HTTP connection the server has parked (DESIGN.md, "No threads, still
//! concurrent"). What remains of Linux's `wait_queue_head` is the
//! bookkeeping, and that is this module: a fixed table of waiters (no heap:
//! a waiter is added exactly when memory is gone), each with a deadline
//! and a key, marked woken by [`WaitQueue::wake_up_all`] and friends, and
//! polled by whoever owns the sleeper.
//!
//! | Linux | here |
//! |---|---|
//! | `prepare_to_wait()` (first time) | [`WaitQueue::add`] |
//! | `prepare_to_wait()` (again, in the retry loop) | [`WaitQueue::rearm`] |
//! | `wake_up_all()`, `wake_up_nr()` | [`WaitQueue::wake_up_all`], [`WaitQueue::wake_up`] |
//! | `__wake_up()` with a key and a filtering wake function | [`WaitQueue::wake_up_key`] |
//! | `schedule_timeout()` returning | [`WaitQueue::poll`] → [`WaitState`] |
//! | `finish_wait()` | [`WaitQueue::remove`] |
//!
//! A woken waiter stays woken until it is removed or re-armed, so a
//! wake-up between two polls is never lost; a removed waiter's token never
//! names a later waiter of the same slot (each slot counts generations).

/// Waiters a [`WaitQueue`] holds by default.
pub const WAIT_QUEUE_CAPACITY: usize = 64;

/// Names one waiter of one [`WaitQueue`]: a slot and its generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WaitToken {
    index: u16,
    generation: u32,
}

impl WaitToken {
    /// Bits [`WaitToken::to_raw`] uses (the rest of a `u64` is the
    /// owner's, e.g. to say which queue).
    pub const RAW_BITS: u32 = 48;

    /// The token as a number (below `1 << RAW_BITS`, never 0).
    pub const fn to_raw(self) -> u64 {
        ((self.generation as u64) << 16) | self.index as u64
    }

    /// A token from [`WaitToken::to_raw`]; `None` if `raw` cannot be one.
    /// (Any number that can is accepted: the queue tells whether it names
    /// a live waiter.)
    pub const fn from_raw(raw: u64) -> Option<WaitToken> {
        if raw >> Self::RAW_BITS != 0 || raw >> 16 == 0 {
            return None;
        }
        Some(WaitToken {
            index: (raw & 0xffff) as u16,
            generation: (raw >> 16) as u32,
        })
    }
}

/// [`WaitQueue::add`] refused: every slot holds a waiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueFull;

impl core::fmt::Display for QueueFull {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "wait queue full")
    }
}

/// What [`WaitQueue::poll`] says of a waiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitState {
    /// Still asleep: not woken and its deadline is ahead.
    Waiting,
    /// Woken since it was added or re-armed (even if its deadline has
    /// passed since: the wake-up came first, or at least before anyone
    /// looked).
    Woken,
    /// Not woken, and the deadline has come.
    TimedOut,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Waiter {
    key: u64,
    deadline_ms: u64,
    woken: bool,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    /// Bumped on every removal, so old tokens stop matching. Starts at 1,
    /// so no token is 0.
    generation: u32,
    waiter: Option<Waiter>,
}

/// A wait queue head with room for `N` waiters; see the module doc.
#[derive(Debug, Clone)]
pub struct WaitQueue<const N: usize = WAIT_QUEUE_CAPACITY> {
    slots: [Slot; N],
    /// Waiters woken since creation (each counted once per wake-up).
    wakeups: u64,
    /// Waiters that timed out (counted by [`WaitQueue::poll`], once).
    timeouts: u64,
}

impl<const N: usize> Default for WaitQueue<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> WaitQueue<N> {
    /// An empty queue (cf. `DECLARE_WAIT_QUEUE_HEAD`).
    pub const fn new() -> Self {
        assert!(N <= u16::MAX as usize + 1, "slot index must fit a u16");
        WaitQueue {
            slots: [Slot {
                generation: 1,
                waiter: None,
            }; N],
            wakeups: 0,
            timeouts: 0,
        }
    }

    /// Add a waiter that sleeps until woken or until `deadline_ms`; `key`
    /// is for [`WaitQueue::wake_up_key`] (0 if unused). Refused when every
    /// slot is taken: the caller must not sleep then (nothing would ever
    /// wake it).
    pub fn add(&mut self, key: u64, deadline_ms: u64) -> Result<WaitToken, QueueFull> {
        let (index, slot) = self
            .slots
            .iter_mut()
            .enumerate()
            .find(|(_, s)| s.waiter.is_none())
            .ok_or(QueueFull)?;
        slot.waiter = Some(Waiter {
            key,
            deadline_ms,
            woken: false,
        });
        Ok(WaitToken {
            // `new()` asserts that every index fits.
            index: index as u16,
            generation: slot.generation,
        })
    }

    fn waiter(&self, token: WaitToken) -> Option<&Waiter> {
        let slot = self.slots.get(usize::from(token.index))?;
        (slot.generation == token.generation)
            .then_some(slot.waiter.as_ref())
            .flatten()
    }

    fn waiter_mut(&mut self, token: WaitToken) -> Option<&mut Waiter> {
        let slot = self.slots.get_mut(usize::from(token.index))?;
        if slot.generation != token.generation {
            return None;
        }
        slot.waiter.as_mut()
    }

    /// Whether `token` names a waiter of this queue now.
    pub fn contains(&self, token: WaitToken) -> bool {
        self.waiter(token).is_some()
    }

    /// The deadline `token` was added with.
    pub fn deadline_ms(&self, token: WaitToken) -> Option<u64> {
        self.waiter(token).map(|w| w.deadline_ms)
    }

    /// Sleep again after a wake-up that did not help (the retry failed):
    /// not woken any more, same deadline and key. `false` if `token`
    /// names no waiter.
    pub fn rearm(&mut self, token: WaitToken) -> bool {
        match self.waiter_mut(token) {
            Some(w) => {
                w.woken = false;
                true
            }
            None => false,
        }
    }

    /// Where the waiter stands at `now_ms`; `None` if `token` names no
    /// waiter (removed, or the queue was cleared).
    pub fn poll(&mut self, token: WaitToken, now_ms: u64) -> Option<WaitState> {
        let w = *self.waiter(token)?;
        Some(if w.woken {
            WaitState::Woken
        } else if now_ms >= w.deadline_ms {
            WaitState::TimedOut
        } else {
            WaitState::Waiting
        })
    }

    /// Take the waiter off the queue (cf. `finish_wait()`); its token
    /// never matches again. `false` if it was not there.
    pub fn remove(&mut self, token: WaitToken) -> bool {
        let Some(slot) = self.slots.get_mut(usize::from(token.index)) else {
            return false;
        };
        if slot.generation != token.generation || slot.waiter.is_none() {
            return false;
        }
        slot.waiter = None;
        // Skip 0 on wrap-around, so no token is ever 0.
        slot.generation = slot.generation.wrapping_add(1).max(1);
        true
    }

    /// Mark every sleeping waiter for which `pred(key)` holds woken, at
    /// most `nr`; returns how many were woken.
    fn wake(&mut self, nr: usize, mut pred: impl FnMut(u64) -> bool) -> usize {
        let mut woken = 0;
        for w in self.slots.iter_mut().filter_map(|s| s.waiter.as_mut()) {
            if woken == nr {
                break;
            }
            if !w.woken && pred(w.key) {
                w.woken = true;
                woken += 1;
            }
        }
        self.wakeups += woken as u64;
        woken
    }

    /// Wake every sleeping waiter (cf. `wake_up_all()`); returns how many.
    pub fn wake_up_all(&mut self) -> usize {
        self.wake(usize::MAX, |_| true)
    }

    /// Wake at most `nr` sleeping waiters, in slot order (cf.
    /// `wake_up_nr()`); returns how many.
    pub fn wake_up(&mut self, nr: usize) -> usize {
        self.wake(nr, |_| true)
    }

    /// Wake every sleeping waiter added with `key` (cf. a keyed
    /// `__wake_up()` whose wake function compares the key, as
    /// `wake_up_bit()` does); returns how many.
    pub fn wake_up_key(&mut self, key: u64) -> usize {
        self.wake(usize::MAX, |k| k == key)
    }

    /// Count a timeout the owner acted on (see [`WaitQueue::timeouts`]).
    pub fn note_timeout(&mut self) {
        self.timeouts += 1;
    }

    /// Remove every waiter; their tokens never match again. Returns how
    /// many there were.
    pub fn clear(&mut self) -> usize {
        let mut n = 0;
        for slot in &mut self.slots {
            if slot.waiter.take().is_some() {
                slot.generation = slot.generation.wrapping_add(1).max(1);
                n += 1;
            }
        }
        n
    }

    /// Waiters on the queue now (sleeping or woken, not yet removed).
    pub fn len(&self) -> usize {
        self.slots.iter().filter(|s| s.waiter.is_some()).count()
    }

    /// Whether no waiter is on the queue (cf. `waitqueue_active()`'s
    /// negation).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waiters woken since creation.
    pub fn wakeups(&self) -> u64 {
        self.wakeups
    }

    /// Timeouts noted with [`WaitQueue::note_timeout`] since creation.
    pub fn timeouts(&self) -> u64 {
        self.timeouts
    }

    /// The earliest deadline of a waiter still asleep, if any.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        self.slots
            .iter()
            .filter_map(|s| s.waiter)
            .filter(|w| !w.woken)
            .map(|w| w.deadline_ms)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_wake_remove() {
        let mut q: WaitQueue<4> = WaitQueue::new();
        assert!(q.is_empty());
        let a = q.add(0, 100).unwrap();
        let b = q.add(0, 200).unwrap();
        assert_eq!(q.len(), 2);
        assert_eq!(q.poll(a, 50), Some(WaitState::Waiting));
        assert_eq!(q.next_deadline_ms(), Some(100));
        assert_eq!(q.wake_up(1), 1);
        assert_eq!(q.poll(a, 50), Some(WaitState::Woken));
        assert_eq!(q.poll(b, 50), Some(WaitState::Waiting));
        assert_eq!(q.next_deadline_ms(), Some(200));
        // Woken stays woken, even past the deadline.
        assert_eq!(q.poll(a, 1000), Some(WaitState::Woken));
        assert_eq!(q.wake_up_all(), 1, "a is woken already");
        assert_eq!(q.wakeups(), 2);
        assert!(q.remove(a));
        assert!(!q.remove(a));
        assert_eq!(q.poll(a, 0), None);
        assert!(q.rearm(b));
        assert_eq!(q.poll(b, 199), Some(WaitState::Waiting));
        assert_eq!(q.poll(b, 200), Some(WaitState::TimedOut));
        assert_eq!(q.deadline_ms(b), Some(200));
    }

    #[test]
    fn wait_full_queue_refuses() {
        let mut q: WaitQueue<2> = WaitQueue::new();
        let a = q.add(0, 1).unwrap();
        q.add(0, 1).unwrap();
        assert_eq!(q.add(0, 1), Err(QueueFull));
        q.remove(a);
        assert!(q.add(0, 1).is_ok());
    }

    #[test]
    fn wait_tokens_do_not_alias() {
        let mut q: WaitQueue<1> = WaitQueue::new();
        let a = q.add(0, 10).unwrap();
        q.remove(a);
        let b = q.add(0, 10).unwrap();
        assert_ne!(a, b);
        assert_ne!(a.to_raw(), b.to_raw());
        assert_eq!(q.poll(a, 0), None);
        assert!(!q.remove(a));
        assert!(q.contains(b));
        assert_eq!(q.clear(), 1);
        assert!(!q.contains(b));
        let c = q.add(0, 10).unwrap();
        assert!(c != a && c != b);
    }

    #[test]
    fn wait_keyed_wake_ups() {
        let mut q: WaitQueue<4> = WaitQueue::new();
        let a = q.add(7, 100).unwrap();
        let b = q.add(8, 100).unwrap();
        assert_eq!(q.wake_up_key(8), 1);
        assert_eq!(q.poll(a, 0), Some(WaitState::Waiting));
        assert_eq!(q.poll(b, 0), Some(WaitState::Woken));
        assert_eq!(q.wake_up_key(9), 0);
    }

    #[test]
    fn wait_raw_tokens_round_trip() {
        let mut q: WaitQueue<3> = WaitQueue::new();
        for _ in 0..5 {
            let t = q.add(0, 0).unwrap();
            assert_ne!(t.to_raw(), 0);
            assert!(t.to_raw() < 1 << WaitToken::RAW_BITS);
            assert_eq!(WaitToken::from_raw(t.to_raw()), Some(t));
            q.remove(t);
        }
        assert_eq!(WaitToken::from_raw(0), None);
        assert_eq!(WaitToken::from_raw(5), None, "generation 0 is never issued");
        assert_eq!(WaitToken::from_raw(1 << 60), None);
        // A token for a slot the queue does not have names nothing.
        let far = WaitToken::from_raw((1 << 16) | 999).unwrap();
        assert_eq!(q.poll(far, 0), None);
        assert!(!q.remove(far));
        assert!(!q.rearm(far));
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        #[derive(Debug, Clone)]
        enum Op {
            Add { key: u8, after_ms: u16 },
            WakeAll,
            Wake(u8),
            WakeKey(u8),
            Remove(u8),
            Rearm(u8),
            Tick(u16),
            Clear,
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                4 => (0u8..3, 0u16..500).prop_map(|(key, after_ms)| Op::Add { key, after_ms }),
                1 => Just(Op::WakeAll),
                1 => (0u8..4).prop_map(Op::Wake),
                1 => (0u8..3).prop_map(Op::WakeKey),
                2 => any::<u8>().prop_map(Op::Remove),
                1 => any::<u8>().prop_map(Op::Rearm),
                2 => (0u16..300).prop_map(Op::Tick),
                1 => Just(Op::Clear),
            ]
        }

        /// The model of one waiter.
        #[derive(Debug, Clone, Copy)]
        struct Model {
            token: WaitToken,
            key: u64,
            deadline_ms: u64,
            woken: bool,
            live: bool,
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

            /// Against a model: woken waiters stay woken until removed or
            /// re-armed, wake-ups are counted exactly, a full queue
            /// refuses, removed tokens never match (nor alias a newer
            /// waiter), and timeouts come exactly at the deadline.
            #[test]
            fn wait_queue_matches_model(ops in proptest::collection::vec(op(), 0..200)) {
                let mut q: WaitQueue<8> = WaitQueue::new();
                let mut model: Vec<Model> = Vec::new();
                let mut now = 0u64;
                let mut wakeups = 0u64;
                for op in ops {
                    match op {
                        Op::Add { key, after_ms } => {
                            let live = model.iter().filter(|m| m.live).count();
                            let deadline_ms = now + u64::from(after_ms);
                            match q.add(u64::from(key), deadline_ms) {
                                Ok(token) => {
                                    prop_assert!(live < 8);
                                    prop_assert!(model.iter().all(|m| m.token != token),
                                        "token {token:?} reissued");
                                    model.push(Model { token, key: u64::from(key), deadline_ms, woken: false, live: true });
                                }
                                Err(QueueFull) => prop_assert_eq!(live, 8),
                            }
                        }
                        Op::WakeAll => {
                            let n = q.wake_up_all();
                            let mut expect = 0;
                            for m in model.iter_mut().filter(|m| m.live && !m.woken) {
                                m.woken = true;
                                expect += 1;
                            }
                            prop_assert_eq!(n, expect);
                            wakeups += n as u64;
                        }
                        Op::Wake(nr) => {
                            let sleeping = model.iter().filter(|m| m.live && !m.woken).count();
                            let n = q.wake_up(usize::from(nr));
                            prop_assert_eq!(n, sleeping.min(usize::from(nr)));
                            // Which ones: ask the queue, then check the count.
                            for m in model.iter_mut().filter(|m| m.live && !m.woken) {
                                if q.poll(m.token, 0) == Some(WaitState::Woken) {
                                    m.woken = true;
                                }
                            }
                            wakeups += n as u64;
                        }
                        Op::WakeKey(key) => {
                            let n = q.wake_up_key(u64::from(key));
                            let mut expect = 0;
                            for m in model.iter_mut().filter(|m| m.live && !m.woken && m.key == u64::from(key)) {
                                m.woken = true;
                                expect += 1;
                            }
                            prop_assert_eq!(n, expect);
                            wakeups += n as u64;
                        }
                        Op::Remove(i) | Op::Rearm(i) if model.is_empty() => { let _ = i; }
                        Op::Remove(i) => {
                            let len = model.len();
                            let m = &mut model[usize::from(i) % len];
                            prop_assert_eq!(q.remove(m.token), m.live);
                            m.live = false;
                        }
                        Op::Rearm(i) => {
                            let len = model.len();
                            let m = &mut model[usize::from(i) % len];
                            prop_assert_eq!(q.rearm(m.token), m.live);
                            if m.live {
                                m.woken = false;
                            }
                        }
                        Op::Tick(ms) => now += u64::from(ms),
                        Op::Clear => {
                            let live = model.iter().filter(|m| m.live).count();
                            prop_assert_eq!(q.clear(), live);
                            for m in &mut model {
                                m.live = false;
                            }
                        }
                    }
                    // Every waiter, live or gone, reads as the model says.
                    for m in &model {
                        let expect = match (m.live, m.woken) {
                            (false, _) => None,
                            (true, true) => Some(WaitState::Woken),
                            (true, false) if now >= m.deadline_ms => Some(WaitState::TimedOut),
                            (true, false) => Some(WaitState::Waiting),
                        };
                        prop_assert_eq!(q.poll(m.token, now), expect, "{:?}", m);
                    }
                    prop_assert_eq!(q.len(), model.iter().filter(|m| m.live).count());
                    prop_assert_eq!(q.wakeups(), wakeups);
                    prop_assert_eq!(
                        q.next_deadline_ms(),
                        model.iter().filter(|m| m.live && !m.woken).map(|m| m.deadline_ms).min()
                    );
                }
            }
        }
    }
}
