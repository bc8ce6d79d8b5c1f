//! Redelivery: what a downstream could not take waits here and is tried again until it lands,
//! for at most `--redeliver-for`; and the lanes that decide whether a delivery calls a
//! downstream at once.
//!
//! - One [`Lane`] per downstream: whether it answers, the calls waiting on it (at most its
//!   share of the handlers, so a hanging downstream holds no more, with redelivery on or off),
//!   its rate (a token bucket of `--notify-rate` calls a second), and its backlog.
//! - While a downstream answers, new changes go to it at once, concurrently, even while a
//!   backlog drains in the background; the backlog drains at up to half its share at a time
//!   (runs of their own, never taking a delivery's slot),
//!   on the callers ([`Calls`]), within its rate.
//! - A failed call marks it down: new changes join the backlog at once, and one try is made
//!   after 1 s, doubling to 60 s, but at least every second while changes keep arriving. The
//!   first success ends the back-off and the backlog drains.
//! - An identical (downstream, change) pair already waiting is one entry (a map, not a scan):
//!   a flood of pushes for one repo while fluxd is down is one notification when it is back.
//! - At most `--redeliver-max` entries and `--redeliver-max-bytes` bytes in all lanes; past
//!   that a change is refused, all or nothing per call.
//! - With a spool ([`spool`]), queued changes are on disk before `queue` returns, and read back
//!   at start.
//! - On shutdown each lane gives its backlog one last try within the grace period; what is
//!   left stays in the spool, or is reported dropped.
//!
//! No thread per lane: one scheduler thread keeps the timers (tries, expiry, rate), the
//! callers make the calls. What happens is reported to an [`Observer`]: this module neither
//! logs nor counts.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Condvar, Mutex, RwLock, Weak};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::calls::Calls;
use super::{lock, Downstream, Sent};
use crate::change::Change;

mod backlog;
mod drain;
mod lane;
pub mod spool;

use lane::Health;
pub use lane::{Lane, BACKOFF_FIRST, BACKOFF_MAX};
use spool::Spool;

/// Why a pending change was given up on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// `--redeliver-for` passed.
    Expired,
    /// The downstream declined it for good on a later try.
    Declined,
    /// The queue was full when it failed.
    QueueFull,
    /// Still pending when the process stopped (without a spool).
    Shutdown,
    /// Its downstream left the config on a reload.
    Removed,
    /// It could not be written to the spool.
    Spool,
}

impl Dropped {
    pub const ALL: [Dropped; 6] = [
        Dropped::Expired,
        Dropped::Declined,
        Dropped::QueueFull,
        Dropped::Shutdown,
        Dropped::Removed,
        Dropped::Spool,
    ];

    /// The `reason` label and log word.
    pub fn word(self) -> &'static str {
        match self {
            Dropped::Expired => "expired",
            Dropped::Declined => "rejected",
            Dropped::QueueFull => "queue_full",
            Dropped::Shutdown => "shutdown",
            Dropped::Removed => "removed",
            Dropped::Spool => "spool_failed",
        }
    }
}

/// What the queue tells whoever logs and counts.
pub trait Observer: Send + Sync {
    /// One background try of `change`, and what it did.
    fn tried(&self, downstream: &str, change: &Change, sent: &Sent, took: Duration);
    /// `change` reached `downstream` after waiting `waited` since it was first queued.
    fn delivered(&self, downstream: &str, change: &Change, waited: Duration, attempts: u32);
    fn dropped(&self, downstream: &str, change: &Change, reason: Dropped, waited: Duration);
    /// Called about once a second while anything waits (for summaries of what was not logged
    /// line by line).
    fn tick(&self) {}
}

/// Limits of the queue.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// How long a change is tried before it is dropped; zero turns redelivery off.
    pub horizon: Duration,
    /// Entries held at once, in all lanes.
    pub max_entries: usize,
    /// Bytes held at once (names and per-entry overhead), in all lanes.
    pub max_bytes: usize,
    /// Time for one try.
    pub timeout: Duration,
    /// Calls a second per downstream; zero: no limit.
    pub rate: f64,
}

/// Whether a delivery calls a downstream now.
pub enum Admit<'a> {
    /// Yes, holding one of its call slots until the slot is dropped.
    Call(Slot<'a>),
    /// No: the changes are to be queued (redelivery on).
    Queue(Wait),
    /// No, and redelivery is off: the delivery fails.
    Refuse(Wait),
}

/// Why a downstream is not called at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// A call failed and it has not answered since; `pending` changes wait for it.
    Down { pending: usize },
    /// Its share of calls is already waiting on it.
    ShareTaken,
    /// Its rate is used up for now.
    Throttled,
}

/// A call slot of a lane, given back when dropped.
pub struct Slot<'a> {
    queue: &'a Redelivery,
    lane: &'a Lane,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut state = self.lane.state();
        state.calls -= 1;
        let backlog = !state.backlog.is_empty();
        drop(state);
        if backlog {
            self.queue.wake();
        }
    }
}

pub struct Redelivery {
    limits: Limits,
    observer: Arc<dyn Observer>,
    calls: Arc<Calls>,
    spool: Option<Spool>,
    lanes: RwLock<BTreeMap<String, Arc<Lane>>>,
    /// Entries and bytes in all lanes.
    entries: AtomicUsize,
    bytes: AtomicUsize,
    woken: Mutex<bool>,
    wake: Condvar,
    scheduler: Mutex<Option<JoinHandle<()>>>,
    stopping: AtomicBool,
    this: Weak<Redelivery>,
}

impl Redelivery {
    /// The queue, and with redelivery on its scheduler thread.
    pub fn new(
        limits: Limits,
        observer: Arc<dyn Observer>,
        calls: Arc<Calls>,
        spool: Option<Spool>,
    ) -> Arc<Redelivery> {
        let queue = Arc::new_cyclic(|this| Redelivery {
            limits,
            observer,
            calls,
            spool,
            lanes: RwLock::new(BTreeMap::new()),
            entries: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            woken: Mutex::new(false),
            wake: Condvar::new(),
            scheduler: Mutex::new(None),
            stopping: AtomicBool::new(false),
            this: Weak::clone(this),
        });
        if queue.enabled() {
            let this = Arc::clone(&queue);
            let spawned = thread::Builder::new()
                .name("redelivery".into())
                .spawn(move || this.schedule());
            *lock(&queue.scheduler) = spawned.ok();
        }
        queue
    }

    pub fn enabled(&self) -> bool {
        !self.limits.horizon.is_zero()
    }

    fn arc(&self) -> Option<Arc<Redelivery>> {
        self.this.upgrade()
    }

    /// The lanes of a (new) set of downstreams, each with `share` call slots: known names keep
    /// their lane (its backlog and calls in flight) and take the new definition.
    pub fn lanes(&self, downstreams: &[Arc<Downstream>], share: usize) -> Vec<Arc<Lane>> {
        let mut lanes = self.lanes.write().unwrap_or_else(|p| p.into_inner());
        downstreams
            .iter()
            .map(|downstream| match lanes.get(&downstream.name) {
                Some(lane) => {
                    lane.redefine(Arc::clone(downstream), share);
                    Arc::clone(lane)
                }
                None => {
                    let lane = Arc::new(Lane::new(Arc::clone(downstream), share, self.limits.rate));
                    lanes.insert(downstream.name.clone(), Arc::clone(&lane));
                    lane
                }
            })
            .collect()
    }

    /// Closes the lanes of names no longer configured and drops their backlogs.
    pub fn retain(&self, names: &[&str]) {
        let gone: Vec<Arc<Lane>> = {
            let mut lanes = self.lanes.write().unwrap_or_else(|p| p.into_inner());
            let gone: Vec<String> = lanes
                .keys()
                .filter(|name| !names.contains(&name.as_str()))
                .cloned()
                .collect();
            gone.iter().filter_map(|name| lanes.remove(name)).collect()
        };
        for lane in gone {
            let mut state = lane.state();
            state.closed = true;
            let left = state.backlog.take_all();
            drop(state);
            lane.written.notify_all();
            self.release(&lane, left, Dropped::Removed);
        }
    }

    /// Whether a delivery calls `lane` now with `n` changes.
    pub fn admit<'a>(&'a self, lane: &'a Lane, n: usize) -> Admit<'a> {
        let wait = |why| {
            if self.enabled() {
                Admit::Queue(why)
            } else {
                Admit::Refuse(why)
            }
        };
        let mut state = lane.state();
        if self.enabled() {
            if let Health::Down { .. } = state.health {
                let sooner = state.arrived();
                let pending = state.backlog.len();
                drop(state);
                if sooner {
                    self.wake();
                }
                return Admit::Queue(Wait::Down { pending });
            }
        }
        if state.calls >= state.share {
            return wait(Wait::ShareTaken);
        }
        if !state.bucket.take(n, Instant::now()) {
            return wait(Wait::Throttled);
        }
        state.calls += 1;
        Admit::Call(Slot { queue: self, lane })
    }

    /// A delivery's call answered (accepted or refused for good): the downstream is up.
    pub fn answered(&self, lane: &Lane) {
        let mut state = lane.state();
        if state.health != Health::Up {
            state.health = Health::Up;
            drop(state);
            self.wake();
        }
    }

    /// A delivery's call failed for a transient reason: the downstream is down until it answers.
    pub fn failed(&self, lane: &Lane) {
        if !self.enabled() {
            return;
        }
        let mut state = lane.state();
        if state.health == Health::Up {
            state.failed(Instant::now());
        }
    }

    /// Changes waiting for `downstream`.
    pub fn pending(&self, downstream: &str) -> usize {
        let lanes = self.lanes.read().unwrap_or_else(|p| p.into_inner());
        lanes.get(downstream).map_or(0, |lane| lane.pending())
    }

    /// Changes waiting per downstream, for the metrics.
    pub fn pending_by_downstream(&self) -> Vec<(String, usize)> {
        let lanes = self.lanes.read().unwrap_or_else(|p| p.into_inner());
        lanes
            .iter()
            .map(|(name, lane)| (name.clone(), lane.pending()))
            .collect()
    }

    /// Changes in the spool and the bytes of its files, when there is one.
    pub fn spool_stats(&self) -> Option<(usize, u64)> {
        self.spool.as_ref().map(Spool::stats)
    }
}

#[cfg(test)]
mod tests;
