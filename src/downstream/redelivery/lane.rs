//! One downstream's lane: whether it answers, the calls waiting on it, its rate, and its
//! backlog of changes waiting for redelivery (a map for coalescing, in queued order).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::spool::SpoolFile;
use crate::change::Change;
use crate::downstream::{lock, Downstream};

/// The first wait after a failed try, doubled after each failed try up to [`BACKOFF_MAX`];
/// while changes keep arriving, a lane is tried at least every [`BACKOFF_FIRST`].
pub const BACKOFF_FIRST: Duration = Duration::from_secs(1);
pub const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// A change's bytes in the queue beyond its names: the entry, its index slot, its `Arc`.
pub(super) const ENTRY_OVERHEAD: usize = 160;

pub struct Lane {
    pub name: String,
    downstream: Mutex<Arc<Downstream>>,
    pub(super) state: Mutex<State>,
    /// Wakes a caller waiting for an identical change's spool write.
    pub(super) written: Condvar,
}

/// Whether the downstream answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Health {
    Up,
    /// A call failed: new changes are queued, one try at a time at `next_try`.
    Down {
        backoff: Duration,
        last_try: Instant,
        next_try: Instant,
        /// A try is under way.
        trying: bool,
    },
}

pub(super) struct State {
    pub(super) health: Health,
    /// Deliveries' calls in flight, on handler threads: at most `share`, so that a hanging
    /// downstream holds no more of the handlers.
    pub(super) calls: usize,
    /// Backlog runs in flight, on callers: at most `drain_width`, so that a hanging downstream
    /// holds no more of the callers, and a backlog never takes a delivery's slot.
    pub(super) draining: usize,
    pub(super) share: usize,
    pub(super) drain_width: usize,
    pub(super) bucket: Bucket,
    pub(super) backlog: Backlog,
    /// Set when the lane leaves the config or the process stops.
    pub(super) closed: bool,
}

/// Calls per second, as a token bucket holding one second's worth.
pub(super) struct Bucket {
    /// Zero: no limit.
    rate: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    pub(super) fn new(rate: f64) -> Bucket {
        Bucket {
            rate,
            tokens: rate,
            at: Instant::now(),
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        self.at = now;
    }

    /// Takes `n` calls' worth, if there is that much.
    pub(super) fn take(&mut self, n: usize, now: Instant) -> bool {
        if self.rate == 0.0 {
            return true;
        }
        self.refill(now);
        if self.tokens >= n as f64 {
            self.tokens -= n as f64;
            true
        } else {
            false
        }
    }

    /// When one call's worth will be there.
    pub(super) fn next_token(&mut self, now: Instant) -> Instant {
        if self.rate == 0.0 {
            return now;
        }
        self.refill(now);
        if self.tokens >= 1.0 {
            return now;
        }
        now + Duration::from_secs_f64((1.0 - self.tokens) / self.rate)
    }
}

/// Whether an entry may be sent.
#[derive(Debug, Clone)]
pub(super) enum Ready {
    /// Its spool file is being written: not yet promised, not yet sent.
    Writing,
    /// Promised (in the spool, when there is one).
    Yes(Option<Arc<SpoolFile>>),
}

pub(super) struct Entry {
    pub(super) change: Arc<Change>,
    pub(super) queued: Instant,
    pub(super) attempts: u32,
    /// Bumped when the same change is queued again while it is being sent, so that the try
    /// under way does not swallow it.
    pub(super) generation: u64,
    pub(super) sending: bool,
    pub(super) ready: Ready,
    pub(super) bytes: usize,
    /// The id of the delivery that first queued it, sent on as `X-Request-Id`.
    pub(super) request_id: Option<Arc<str>>,
}

/// The changes waiting, in queued order, each once.
#[derive(Default)]
pub(super) struct Backlog {
    by_order: BTreeMap<u64, Entry>,
    index: HashMap<Arc<Change>, u64>,
    next: u64,
}

impl Backlog {
    pub(super) fn len(&self) -> usize {
        self.by_order.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.by_order.is_empty()
    }

    pub(super) fn find(&mut self, change: &Change) -> Option<(u64, &mut Entry)> {
        let key = *self.index.get(change)?;
        self.by_order.get_mut(&key).map(|e| (key, e))
    }

    pub(super) fn insert(&mut self, entry: Entry) -> u64 {
        let key = self.next;
        self.next += 1;
        self.index.insert(Arc::clone(&entry.change), key);
        self.by_order.insert(key, entry);
        key
    }

    pub(super) fn remove(&mut self, key: u64) -> Option<Entry> {
        let entry = self.by_order.remove(&key)?;
        self.index.remove(&*entry.change);
        Some(entry)
    }

    pub(super) fn get_mut(&mut self, key: u64) -> Option<&mut Entry> {
        self.by_order.get_mut(&key)
    }

    /// The first entry that may be sent now.
    pub(super) fn next_unsent(&self) -> Option<u64> {
        self.by_order
            .iter()
            .find(|(_, e)| !e.sending && matches!(e.ready, Ready::Yes(_)))
            .map(|(k, _)| *k)
    }

    /// Entries queued before `cutoff` and not being sent.
    pub(super) fn expired(&self, cutoff: Instant) -> Vec<u64> {
        self.by_order
            .iter()
            .take_while(|(_, e)| e.queued < cutoff)
            .filter(|(_, e)| !e.sending && matches!(e.ready, Ready::Yes(_)))
            .map(|(k, _)| *k)
            .collect()
    }

    /// When the oldest entry was queued.
    pub(super) fn oldest(&self) -> Option<Instant> {
        self.by_order.values().map(|e| e.queued).min()
    }

    pub(super) fn take_all(&mut self) -> Vec<Entry> {
        self.index.clear();
        std::mem::take(&mut self.by_order).into_values().collect()
    }
}

impl Lane {
    pub(super) fn new(downstream: Arc<Downstream>, share: usize, rate: f64) -> Lane {
        Lane {
            name: downstream.name.clone(),
            downstream: Mutex::new(downstream),
            state: Mutex::new(State {
                health: Health::Up,
                calls: 0,
                draining: 0,
                share,
                drain_width: drain_width(share),
                bucket: Bucket::new(rate),
                backlog: Backlog::default(),
                closed: false,
            }),
            written: Condvar::new(),
        }
    }

    /// The downstream as the config defines it now.
    pub fn downstream(&self) -> Arc<Downstream> {
        Arc::clone(&lock(&self.downstream))
    }

    pub(super) fn redefine(&self, downstream: Arc<Downstream>, share: usize) {
        *lock(&self.downstream) = downstream;
        let mut state = self.state();
        state.share = share;
        state.drain_width = drain_width(share);
    }

    pub(super) fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Changes waiting.
    pub fn pending(&self) -> usize {
        self.state().backlog.len()
    }
}

/// A backlog drains with at most half the lane's share of calls at once (at least one), on the
/// callers and besides the deliveries' own calls, so that it cannot flood a downstream that has
/// just come back.
fn drain_width(share: usize) -> usize {
    (share / 2).max(1)
}

impl State {
    /// Marks the downstream down after a failed try at `now`; the next try waits the back-off
    /// (doubled from the last one), or one second when changes keep arriving.
    pub(super) fn failed(&mut self, now: Instant) {
        let backoff = match self.health {
            Health::Down { backoff, .. } => (backoff * 2).min(BACKOFF_MAX),
            Health::Up => BACKOFF_FIRST,
        };
        self.health = Health::Down {
            backoff,
            last_try: now,
            next_try: now + backoff,
            trying: false,
        };
    }

    /// A change arrived for a down lane: it is tried at most a second after its last try.
    /// Returns whether the next try came earlier.
    pub(super) fn arrived(&mut self) -> bool {
        if let Health::Down {
            last_try,
            ref mut next_try,
            ..
        } = self.health
        {
            let soon = last_try + BACKOFF_FIRST;
            if *next_try > soon {
                *next_try = soon;
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_holds_a_second_and_refills_at_the_rate() {
        let start = Instant::now();
        let mut bucket = Bucket::new(10.0);
        bucket.at = start;
        assert!(bucket.take(10, start));
        assert!(!bucket.take(1, start));
        assert_eq!(bucket.next_token(start), start + Duration::from_millis(100));
        assert!(bucket.take(5, start + Duration::from_millis(500)));
        assert!(!bucket.take(1, start + Duration::from_millis(500)));
        let mut free = Bucket::new(0.0);
        assert!(free.take(1_000_000, start));
    }

    #[test]
    fn the_backoff_doubles_to_a_minute_but_arrivals_keep_tries_a_second_apart() {
        let now = Instant::now();
        let mut state = State {
            health: Health::Up,
            calls: 0,
            draining: 0,
            share: 4,
            drain_width: 2,
            bucket: Bucket::new(0.0),
            backlog: Backlog::default(),
            closed: false,
        };
        let mut waits = Vec::new();
        for _ in 0..8 {
            state.failed(now);
            if let Health::Down { next_try, .. } = state.health {
                waits.push((next_try - now).as_secs());
            }
        }
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert!(state.arrived());
        assert!(
            matches!(state.health, Health::Down { next_try, .. } if next_try == now + BACKOFF_FIRST)
        );
        assert!(!state.arrived());
    }
}
