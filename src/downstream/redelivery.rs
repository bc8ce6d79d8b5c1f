//! Background redelivery: changes a downstream could not take for a transient reason wait here
//! and are tried again until they land, for at most `--redeliver-for`.
//!
//! - One lane per downstream, each with its own thread, so a hanging downstream delays only its
//!   own redeliveries.
//! - A lane tries its queue in order, in rounds; a round that meets a transient failure stops
//!   (the downstream is still down) and the next one waits 1 s, doubling to 60 s.
//! - An identical (downstream, change) pair already pending is one entry: a flood of pushes for
//!   one repo while fluxd is down is one notification when it is back. A change that arrives
//!   while its entry is being sent is sent once more.
//! - At most `--redeliver-max` entries in all lanes; past that a change is refused.
//! - On shutdown each lane gives its entries one last try within the grace period.
//!
//! What happens is reported to an [`Observer`]: this module neither logs nor counts.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::{Class, Downstream, OnRefused, Sent};
use crate::change::Change;

/// The first wait after a failed round, doubled after each failed round up to [`BACKOFF_MAX`].
pub const BACKOFF_FIRST: Duration = Duration::from_secs(1);
pub const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// Why a pending change was given up on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// `--redeliver-for` passed.
    Expired,
    /// The downstream refused it for good on a later try.
    Rejected,
    /// The queue was full when it failed.
    QueueFull,
    /// Still pending when the process stopped.
    Shutdown,
    /// Its downstream left the config on a reload.
    Removed,
}

impl Dropped {
    pub const ALL: [Dropped; 5] = [
        Dropped::Expired,
        Dropped::Rejected,
        Dropped::QueueFull,
        Dropped::Shutdown,
        Dropped::Removed,
    ];

    /// The `reason` label and log word.
    pub fn word(self) -> &'static str {
        match self {
            Dropped::Expired => "expired",
            Dropped::Rejected => "rejected",
            Dropped::QueueFull => "queue_full",
            Dropped::Shutdown => "shutdown",
            Dropped::Removed => "removed",
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
}

/// The queue was full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueFull;

/// Limits of the queue.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// How long a change is tried before it is dropped; zero turns redelivery off.
    pub horizon: Duration,
    /// Entries held at once, in all lanes.
    pub max_entries: usize,
    /// Time for one try.
    pub timeout: Duration,
}

pub struct Redelivery {
    limits: Limits,
    observer: Arc<dyn Observer>,
    lanes: Mutex<BTreeMap<String, Lane>>,
    /// Entries in all lanes.
    total: AtomicUsize,
    /// Set by [`Redelivery::finish`]: nothing more is queued.
    stopping: AtomicBool,
}

struct Lane {
    shared: Arc<LaneShared>,
    thread: Option<JoinHandle<()>>,
}

/// What a lane's thread and the request path share.
struct LaneShared {
    name: String,
    state: Mutex<LaneState>,
    wake: Condvar,
}

struct LaneState {
    downstream: Arc<Downstream>,
    entries: Vec<Entry>,
    /// The wait after the next failed round.
    backoff: Duration,
    next_round: Instant,
    stop: Option<Stop>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// Give every entry one last try by this instant, then drop the rest.
    Shutdown(Instant),
    /// Drop every entry at once.
    Removed,
}

/// One entry's turn in a round.
enum Next {
    Send(u64),
    Skip,
    Stop,
}

struct Entry {
    change: Change,
    queued: Instant,
    attempts: u32,
    /// Bumped when the same change is queued again, so a try already under way does not
    /// swallow it.
    generation: u64,
}

impl Redelivery {
    pub fn new(limits: Limits, observer: Arc<dyn Observer>) -> Arc<Redelivery> {
        Arc::new(Redelivery {
            limits,
            observer,
            lanes: Mutex::new(BTreeMap::new()),
            total: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
        })
    }

    pub fn enabled(&self) -> bool {
        !self.limits.horizon.is_zero()
    }

    /// Gives every downstream of a (new) set its lane: known names keep their entries and take
    /// the new definition. Called before the new set serves, so it never meets a missing lane.
    pub fn add(self: &Arc<Self>, downstreams: &[Arc<Downstream>]) {
        if !self.enabled() {
            return;
        }
        let mut lanes = lock(&self.lanes);
        for downstream in downstreams {
            match lanes.get(&downstream.name) {
                Some(lane) => lock(&lane.shared.state).downstream = Arc::clone(downstream),
                None => {
                    if let Some(lane) = self.start_lane(Arc::clone(downstream)) {
                        lanes.insert(downstream.name.clone(), lane);
                    }
                }
            }
        }
    }

    /// Drops the lanes (and their entries) of names no longer configured. Called once the new
    /// set serves.
    pub fn retain(&self, downstreams: &[Arc<Downstream>]) {
        let mut lanes = lock(&self.lanes);
        let gone: Vec<String> = lanes
            .keys()
            .filter(|name| !downstreams.iter().any(|d| &d.name == *name))
            .cloned()
            .collect();
        for name in gone {
            if let Some(lane) = lanes.remove(&name) {
                lane.stop(Stop::Removed);
            }
        }
    }

    /// A lane and its thread; none when no thread can be started (its changes are then refused
    /// at once, never accepted and forgotten).
    fn start_lane(self: &Arc<Self>, downstream: Arc<Downstream>) -> Option<Lane> {
        let shared = Arc::new(LaneShared {
            name: downstream.name.clone(),
            state: Mutex::new(LaneState {
                downstream,
                entries: Vec::new(),
                backoff: BACKOFF_FIRST,
                next_round: Instant::now(),
                stop: None,
            }),
            wake: Condvar::new(),
        });
        let (queue, lane) = (Arc::clone(self), Arc::clone(&shared));
        let thread = thread::Builder::new()
            .name(format!("redeliver-{}", shared.name))
            .spawn(move || queue.run_lane(&lane))
            .ok()?;
        Some(Lane {
            shared,
            thread: Some(thread),
        })
    }

    /// Entries pending for `downstream`.
    pub fn pending(&self, downstream: &str) -> usize {
        lock(&self.lanes)
            .get(downstream)
            .map_or(0, |lane| lock(&lane.shared.state).entries.len())
    }

    /// Entries pending per downstream, for the metrics.
    pub fn pending_by_downstream(&self) -> Vec<(String, usize)> {
        lock(&self.lanes)
            .iter()
            .map(|(name, lane)| (name.clone(), lock(&lane.shared.state).entries.len()))
            .collect()
    }

    /// Queues `changes` for `downstream`, coalescing those already pending. All or nothing: when
    /// the new entries do not fit, none is added and each is reported dropped.
    pub fn queue(&self, downstream: &str, changes: &[Change]) -> Result<(), QueueFull> {
        let (reason, refused) = match self.try_queue(downstream, changes) {
            Ok(()) => return Ok(()),
            Err(refused) => refused,
        };
        for change in &refused {
            self.observer
                .dropped(downstream, change, reason, Duration::ZERO);
        }
        Err(QueueFull)
    }

    /// Queues, or says why not and which changes (those not pending already) are refused.
    fn try_queue(
        &self,
        downstream: &str,
        changes: &[Change],
    ) -> Result<(), (Dropped, Vec<Change>)> {
        let everything = || changes.to_vec();
        let lanes = lock(&self.lanes);
        let Some(lane) = lanes.get(downstream) else {
            let reason = if self.stopping.load(Ordering::SeqCst) {
                Dropped::Shutdown
            } else {
                Dropped::Removed
            };
            return Err((reason, everything()));
        };
        let mut state = lock(&lane.shared.state);
        if state.stop.is_some() {
            return Err((Dropped::Shutdown, everything()));
        }
        // Distinct changes not pending yet: the entries this adds.
        let mut fresh: Vec<&Change> = Vec::new();
        for change in changes {
            if !state.entries.iter().any(|e| &e.change == change) && !fresh.contains(&change) {
                fresh.push(change);
            }
        }
        if self.total.load(Ordering::SeqCst) + fresh.len() > self.limits.max_entries {
            return Err((Dropped::QueueFull, fresh.into_iter().cloned().collect()));
        }
        let now = Instant::now();
        let was_empty = state.entries.is_empty();
        for change in changes {
            match state.entries.iter_mut().find(|e| &e.change == change) {
                Some(entry) => entry.generation += 1,
                None => state.entries.push(Entry {
                    change: change.clone(),
                    queued: now,
                    attempts: 1,
                    generation: 0,
                }),
            }
        }
        self.total.fetch_add(fresh.len(), Ordering::SeqCst);
        if was_empty {
            // A fresh outage starts with the shortest wait.
            state.backoff = BACKOFF_FIRST;
            state.next_round = now + BACKOFF_FIRST;
            lane.shared.wake.notify_all();
        }
        Ok(())
    }

    /// Gives every pending entry one last try, all lanes at once, within `grace`; what is left
    /// is reported dropped.
    pub fn finish(&self, grace: Duration) {
        self.stopping.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + grace;
        let lanes = std::mem::take(&mut *lock(&self.lanes));
        let mut threads = Vec::new();
        for (_, mut lane) in lanes {
            lane.signal(Stop::Shutdown(deadline));
            threads.extend(lane.thread.take());
        }
        for thread in threads {
            let _ = thread.join();
        }
    }

    /// A lane's thread: rounds when due, until stopped.
    fn run_lane(&self, lane: &LaneShared) {
        loop {
            let mut state = lock(&lane.state);
            loop {
                if let Some(stop) = state.stop {
                    drop(state);
                    return self.stop_lane(lane, stop);
                }
                let now = Instant::now();
                if !state.entries.is_empty() && now >= state.next_round {
                    break;
                }
                let wait = if state.entries.is_empty() {
                    Duration::from_secs(3600)
                } else {
                    state.next_round - now
                };
                state = lane
                    .wake
                    .wait_timeout(state, wait)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            drop(state);
            self.round(lane, None);
        }
    }

    /// One pass over the lane's entries in order, each tried by `now + timeout` (or `until`, on
    /// the last round of a shutdown). Stops at the first transient failure and schedules the
    /// next round, and when the lane is stopped (its stop then runs).
    fn round(&self, lane: &LaneShared, until: Option<Instant>) {
        let (downstream, changes) = {
            let state = lock(&lane.state);
            let changes: Vec<Change> = state.entries.iter().map(|e| e.change.clone()).collect();
            (Arc::clone(&state.downstream), changes)
        };
        for change in changes {
            let generation = match self.next(lane, &change, until) {
                Next::Send(generation) => generation,
                Next::Skip => continue,
                Next::Stop => return,
            };
            let started = Instant::now();
            let deadline = until.map_or(started + self.limits.timeout, |u| {
                u.min(started + self.limits.timeout)
            });
            let sent = downstream.send(&change, deadline, OnRefused::GiveUp);
            self.observer
                .tried(&lane.name, &change, &sent, started.elapsed());
            let mut state = lock(&lane.state);
            let Some(i) = state.entries.iter().position(|e| e.change == change) else {
                continue;
            };
            match sent.class() {
                // Queued again while it was being sent: it goes once more.
                Class::Delivered if state.entries[i].generation != generation => {}
                Class::Delivered | Class::Permanent => {
                    let entry = state.entries.remove(i);
                    self.total.fetch_sub(1, Ordering::SeqCst);
                    drop(state);
                    let waited = entry.queued.elapsed();
                    match sent.class() {
                        Class::Delivered => {
                            self.observer
                                .delivered(&lane.name, &change, waited, entry.attempts)
                        }
                        _ => self
                            .observer
                            .dropped(&lane.name, &change, Dropped::Rejected, waited),
                    }
                }
                Class::Transient => {
                    state.entries[i].attempts += 1;
                    state.next_round = Instant::now() + state.backoff;
                    state.backoff = (state.backoff * 2).min(BACKOFF_MAX);
                    return;
                }
            }
        }
        let mut state = lock(&lane.state);
        // Everything in the round landed: what came meanwhile goes next, at once.
        state.backoff = BACKOFF_FIRST;
        state.next_round = Instant::now();
    }

    /// What to do with one entry of a round: send it (at its current generation), skip it (it
    /// is gone, or past the horizon and now dropped), or stop (the lane was stopped).
    fn next(&self, lane: &LaneShared, change: &Change, until: Option<Instant>) -> Next {
        let mut state = lock(&lane.state);
        if until.is_none() && state.stop.is_some() {
            return Next::Stop;
        }
        let Some(i) = state.entries.iter().position(|e| &e.change == change) else {
            return Next::Skip;
        };
        let waited = state.entries[i].queued.elapsed();
        if waited <= self.limits.horizon {
            return Next::Send(state.entries[i].generation);
        }
        state.entries.remove(i);
        self.total.fetch_sub(1, Ordering::SeqCst);
        drop(state);
        self.observer
            .dropped(&lane.name, change, Dropped::Expired, waited);
        Next::Skip
    }

    fn stop_lane(&self, lane: &LaneShared, stop: Stop) {
        let reason = match stop {
            Stop::Shutdown(deadline) => {
                if Instant::now() < deadline {
                    self.round(lane, Some(deadline));
                }
                Dropped::Shutdown
            }
            Stop::Removed => Dropped::Removed,
        };
        let left = std::mem::take(&mut lock(&lane.state).entries);
        self.total.fetch_sub(left.len(), Ordering::SeqCst);
        for entry in left {
            self.observer
                .dropped(&lane.name, &entry.change, reason, entry.queued.elapsed());
        }
    }
}

impl Lane {
    fn signal(&self, stop: Stop) {
        lock(&self.shared.state).stop = Some(stop);
        self.shared.wake.notify_all();
    }

    fn stop(mut self, stop: Stop) {
        self.signal(stop);
        // A removed lane's thread drops its entries and ends; nobody waits for it.
        drop(self.thread.take());
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::downstream::{Filter, Kind};

    #[derive(Default)]
    struct Drops(Mutex<Vec<(String, Dropped)>>);

    impl Observer for Drops {
        fn tried(&self, _: &str, _: &Change, _: &Sent, _: Duration) {}
        fn delivered(&self, _: &str, _: &Change, _: Duration, _: u32) {}
        fn dropped(&self, downstream: &str, change: &Change, reason: Dropped, _: Duration) {
            lock(&self.0).push((format!("{downstream} {change}"), reason));
        }
    }

    fn queue_of(max_entries: usize) -> (Arc<Redelivery>, Arc<Drops>) {
        let drops = Arc::new(Drops::default());
        let limits = Limits {
            horizon: Duration::from_secs(60),
            max_entries,
            timeout: Duration::from_millis(100),
        };
        let queue = Redelivery::new(limits, drops.clone());
        // Nothing listens on port 9 of loopback: a lane's tries fail at once.
        let down = Downstream::new(
            "d",
            Kind::Fluxd {
                api: "http://127.0.0.1:9/api/flux".into(),
            },
            Filter::default(),
        );
        queue.add(&[Arc::new(down)]);
        (queue, drops)
    }

    fn git(repo: &str) -> Change {
        Change::git(format!("git@h:o/{repo}.git"), "main")
    }

    #[test]
    fn identical_changes_are_one_entry_and_the_bound_is_all_or_nothing() {
        let (queue, drops) = queue_of(3);
        assert!(queue.queue("d", &[git("a"), git("a"), git("b")]).is_ok());
        assert_eq!(queue.pending("d"), 2);
        assert!(queue.queue("d", &[git("b"), git("a")]).is_ok());
        assert_eq!(queue.pending("d"), 2);
        // Two new ones do not fit in the one place left: neither is added.
        assert_eq!(queue.queue("d", &[git("c"), git("e")]), Err(QueueFull));
        assert_eq!(queue.pending("d"), 2);
        assert_eq!(queue.total.load(Ordering::SeqCst), 2);
        let dropped = lock(&drops.0).clone();
        assert_eq!(
            dropped,
            vec![
                ("d git git@h:o/c.git main".to_owned(), Dropped::QueueFull),
                ("d git git@h:o/e.git main".to_owned(), Dropped::QueueFull),
            ]
        );
        assert!(queue.queue("d", &[git("c")]).is_ok());
        assert_eq!(queue.pending_by_downstream(), vec![("d".to_owned(), 3)]);
    }

    #[test]
    fn a_downstream_that_leaves_the_config_drops_its_entries() {
        let (queue, drops) = queue_of(10);
        assert!(queue.queue("d", &[git("a")]).is_ok());
        queue.retain(&[]);
        let deadline = Instant::now() + Duration::from_secs(2);
        while lock(&drops.0).is_empty() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(
            lock(&drops.0).clone(),
            vec![("d git git@h:o/a.git main".to_owned(), Dropped::Removed)]
        );
        assert_eq!(queue.total.load(Ordering::SeqCst), 0);
        assert_eq!(queue.queue("d", &[git("a")]), Err(QueueFull));
    }

    #[test]
    fn finish_gives_one_last_try_and_reports_what_is_left() {
        let (queue, drops) = queue_of(10);
        assert!(queue.queue("d", &[git("a"), git("b")]).is_ok());
        let started = Instant::now();
        queue.finish(Duration::from_millis(500));
        assert!(started.elapsed() < Duration::from_secs(1));
        let dropped: Vec<Dropped> = lock(&drops.0).iter().map(|(_, r)| *r).collect();
        assert_eq!(dropped, vec![Dropped::Shutdown, Dropped::Shutdown]);
        // Nothing is queued once stopping; what arrives is reported as a shutdown drop.
        assert_eq!(queue.queue("d", &[git("c")]), Err(QueueFull));
        assert_eq!(
            lock(&drops.0).last().map(|(_, r)| *r),
            Some(Dropped::Shutdown)
        );
    }
}
