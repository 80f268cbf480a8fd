//! Sleeping allocations (API.md v2, `"wait_ms"`; DESIGN.md, "No threads,
//! still concurrent"): the API's wait queues and who wakes them.
//!
//! A `POST /api/alloc` whose GFP may reclaim directly and that still fails
//! after the slow path (direct reclaim, the OOM killer) sleeps when it
//! asked to (`"wait_ms"` > 0): it joins [`Waits::pages`] and answers
//! [`Response::pending`], so the server parks its connection and keeps
//! serving the others. Every handle free (`DELETE /api/alloc/{id}`, a task's
//! exit, the OOM reaper), every page reclaim (kswapd, direct reclaim) and
//! every command that gives slab pages back wakes the queue
//! (`wake_up_all()`: each sleeper retries, the losers sleep again). A
//! `mempool_alloc` with a GFP that may reclaim sleeps as Linux's does
//! (`mm/mempool.c`: on `pool->wait`, woken by `mempool_free()`), on
//! [`Waits::mempool`] keyed by its pool, for `"wait_ms"` or
//! [`MEMPOOL_DEFAULT_WAIT_MS`] when the body does not say (Linux sleeps
//! without bound, retrying every 5 s; a request here does not, and wakes
//! only for its pool). `GFP_ATOMIC` and `GFP_NOWAIT` never sleep, and
//! asking them to is 400.
//!
//! The retry (the connection hands the request back with `park` set,
//! whenever anything happened): still asleep → pending again; woken or
//! timed out → the allocation's fast attempt once more; success is 201,
//! failure sleeps again until the deadline, then answers its 507 saying
//! how long it waited. A client that goes away cancels its wait
//! ([`crate::server::stack::App::cancel`]); `POST /api/reset` removes every
//! waiter, and their retries answer 507 without allocating (the reset
//! freed everything; nothing slips in behind it).
//!
//! The queues are `mm::wait::WaitQueue`s: fixed-size, nothing on the heap,
//! so a sleeping request holds no memory that could outlive the pressure
//! (reset still equals boot). There is no Linux vmstat counter for these
//! sleeps; `/metrics` shows the queues (`pagezone_wait_queue_*`).

use alloc::format;
use core::fmt::Write as _;

use mm::platform::Platform;
use mm::wait::{WaitQueue, WaitState, WaitToken};

use super::Api;
use super::metrics::{family, label_value};
use crate::server::error::ApiError;
use crate::server::response::Response;

/// The largest `"wait_ms"` (API.md).
pub(super) const MAX_WAIT_MS: u64 = 30_000;
/// How long a `mempool` allocation with a GFP that may reclaim sleeps when
/// the body gives no `"wait_ms"`.
pub(super) const MEMPOOL_DEFAULT_WAIT_MS: u64 = 30_000;

/// Which queue a token belongs to (its top byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Queue {
    /// Page allocations (every type but `mempool`).
    Pages = 1,
    /// `mempool_alloc`, keyed by pool.
    Mempool = 2,
}

impl Queue {
    fn name(self) -> &'static str {
        match self {
            Queue::Pages => "pages",
            Queue::Mempool => "mempool",
        }
    }
}

/// The API's wait queues.
#[derive(Default)]
pub(super) struct Waits {
    /// Allocations waiting for any memory.
    pages: WaitQueue,
    /// `mempool_alloc`s waiting for an element freed to their pool.
    mempool: WaitQueue,
}

/// The server's token for `token` on `queue`.
fn encode(queue: Queue, token: WaitToken) -> u64 {
    ((queue as u64) << 56) | token.to_raw()
}

fn decode(raw: u64) -> Option<(Queue, WaitToken)> {
    let queue = match raw >> 56 {
        1 => Queue::Pages,
        2 => Queue::Mempool,
        _ => return None,
    };
    Some((queue, WaitToken::from_raw(raw & ((1 << 56) - 1))?))
}

/// The wait-queue key of pool `name` (FNV-1a; a collision only wakes a
/// sleeper for nothing, and it sleeps again).
pub(super) fn pool_key(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Where a retry stands.
pub(super) enum Retry {
    /// Still asleep: answer this (pending again).
    Sleep(Response),
    /// Woken, or the deadline came (`timed_out`): try again; `waited_ms`
    /// since it first slept.
    Attempt { timed_out: bool, waited_ms: u64 },
}

impl<P: Platform> Api<'_, P> {
    fn queue_mut(&mut self, queue: Queue) -> &mut WaitQueue {
        match queue {
            Queue::Pages => &mut self.waits.pages,
            Queue::Mempool => &mut self.waits.mempool,
        }
    }

    /// Sleep for `wait_ms` on `queue` (cf. `prepare_to_wait()`), instead of
    /// answering `error`; a full queue answers `error`, saying so.
    pub(super) fn prepare_to_wait(
        &mut self,
        queue: Queue,
        key: u64,
        wait_ms: u64,
        mut error: ApiError,
    ) -> Result<Response, ApiError> {
        let deadline_ms = self.system.uptime_ms().saturating_add(wait_ms);
        match self.queue_mut(queue).add(key, deadline_ms) {
            Ok(token) => Ok(Response::pending(encode(queue, token), deadline_ms)),
            Err(full) => {
                let _ = write!(error.message, "; not sleeping: {} {full}", queue.name());
                Err(error)
            }
        }
    }

    /// A parked request's retry: what became of its wait. `wait_ms` is
    /// what it asked for (to tell how long it waited).
    pub(super) fn poll_wait(&mut self, raw: u64, wait_ms: u64) -> Result<Retry, ApiError> {
        let now = self.system.uptime_ms();
        let ended = || {
            ApiError::enomem("the wait for memory was ended by POST /api/reset; nothing allocated")
        };
        let (queue, token) = decode(raw).ok_or_else(ended)?;
        let q = self.queue_mut(queue);
        let state = q.poll(token, now).ok_or_else(ended)?;
        let deadline = q.deadline_ms(token).unwrap_or(now);
        let waited_ms = now.saturating_sub(deadline.saturating_sub(wait_ms));
        Ok(match state {
            WaitState::Waiting => Retry::Sleep(Response::pending(raw, deadline)),
            WaitState::Woken => Retry::Attempt {
                timed_out: now >= deadline,
                waited_ms,
            },
            WaitState::TimedOut => Retry::Attempt {
                timed_out: true,
                waited_ms,
            },
        })
    }

    /// Sleep again after a retry that failed before its deadline.
    pub(super) fn rearm_wait(&mut self, raw: u64) -> Result<Response, ApiError> {
        let (queue, token) = decode(raw)
            .ok_or_else(|| ApiError::enomem("the wait for memory ended; nothing allocated"))?;
        let q = self.queue_mut(queue);
        let deadline = q.deadline_ms(token);
        match deadline {
            Some(deadline) if q.rearm(token) => Ok(Response::pending(raw, deadline)),
            _ => Err(ApiError::enomem(
                "the wait for memory ended; nothing allocated",
            )),
        }
    }

    /// Take a waiter off its queue (cf. `finish_wait()`): answered,
    /// timed out or cancelled.
    pub(super) fn finish_wait(&mut self, raw: u64, timed_out: bool) {
        if let Some((queue, token)) = decode(raw) {
            let q = self.queue_mut(queue);
            if q.remove(token) && timed_out {
                q.note_timeout();
            }
        }
    }

    /// Memory was freed: every page-allocation sleeper retries.
    pub(super) fn wake_page_waiters(&mut self) {
        self.waits.pages.wake_up_all();
    }

    /// An element went back to pool `name` (or the pool changed): its
    /// sleepers retry.
    pub(super) fn wake_mempool_waiters(&mut self, name: &str) {
        self.waits.mempool.wake_up_key(pool_key(name));
    }

    /// `POST /api/reset`: no waiter survives.
    pub(super) fn reset_waits(&mut self) {
        self.waits.pages.clear();
        self.waits.mempool.clear();
    }

    /// Waiters on both queues.
    #[cfg(test)]
    pub(super) fn nr_waiters(&self) -> usize {
        self.waits.pages.len() + self.waits.mempool.len()
    }

    /// `/metrics`: the queues.
    pub(super) fn wait_metrics(&self, out: &mut super::metrics::MetricsOut) {
        let queues = [
            (Queue::Pages, &self.waits.pages),
            (Queue::Mempool, &self.waits.mempool),
        ];
        family(
            out,
            "pagezone_wait_queue_waiters",
            "gauge",
            "Allocations sleeping on a wait queue (wait_ms, mempool_alloc).",
        );
        for (q, wq) in queues {
            let _ = writeln!(
                out,
                "pagezone_wait_queue_waiters{{queue=\"{}\"}} {}",
                label_value(q.name()),
                wq.len()
            );
        }
        family(
            out,
            "pagezone_wait_queue_wakeups_total",
            "counter",
            "Sleeping allocations woken.",
        );
        for (q, wq) in queues {
            let _ = writeln!(
                out,
                "pagezone_wait_queue_wakeups_total{{queue=\"{}\"}} {}",
                label_value(q.name()),
                wq.wakeups()
            );
        }
        family(
            out,
            "pagezone_wait_queue_timeouts_total",
            "counter",
            "Sleeping allocations that reached their deadline and failed.",
        );
        for (q, wq) in queues {
            let _ = writeln!(
                out,
                "pagezone_wait_queue_timeouts_total{{queue=\"{}\"}} {}",
                label_value(q.name()),
                wq.timeouts()
            );
        }
    }
}

/// `"wait_ms"` checked: in range, and only with a GFP that may sleep.
pub(super) fn check_wait_ms(wait_ms: Option<u64>, may_reclaim: bool) -> Result<(), ApiError> {
    match wait_ms {
        None | Some(0) => Ok(()),
        Some(w) if w > MAX_WAIT_MS => Err(ApiError::einval(format!(
            "wait_ms {w} is out of range 0..={MAX_WAIT_MS}"
        ))),
        Some(_) if !may_reclaim => Err(ApiError::einval(
            "\"wait_ms\" needs a GFP that allows direct reclaim: atomic allocations (GFP_ATOMIC, GFP_NOWAIT) cannot sleep",
        )),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_reject_garbage() {
        let mut q: WaitQueue = WaitQueue::new();
        let t = q.add(0, 0).unwrap();
        for queue in [Queue::Pages, Queue::Mempool] {
            assert_eq!(decode(encode(queue, t)), Some((queue, t)));
        }
        assert_eq!(decode(0), None);
        assert_eq!(decode(u64::MAX), None);
        assert_eq!(decode(3 << 56 | t.to_raw()), None);
        assert_ne!(pool_key("a"), pool_key("b"));
    }
}
