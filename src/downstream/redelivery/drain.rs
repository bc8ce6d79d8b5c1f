//! When and how waiting changes are sent: the scheduler's timers (tries of a down lane, backlog
//! runs within the rate, expiry), the runs on the callers, and the last try on shutdown.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::lane::{Entry, Health};
use super::{Dropped, Lane, Redelivery};
use crate::downstream::calls::Priority;
use crate::downstream::{lock, Class, OnConnectionRefused};

impl Redelivery {
    pub(super) fn wake(&self) {
        *lock(&self.woken) = true;
        self.wake.notify_one();
    }

    /// The scheduler: tries, backlog runs and expiry when due, until stopped.
    pub(super) fn schedule(self: Arc<Self>) {
        let mut due = Instant::now();
        loop {
            {
                let mut woken = lock(&self.woken);
                // At least once a second: the observer's summaries, and the clock of the rate.
                let until = due.min(Instant::now() + Duration::from_secs(1));
                while !*woken && !self.stopping.load(Ordering::SeqCst) {
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    woken = self
                        .wake
                        .wait_timeout(woken, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
                *woken = false;
            }
            if self.stopping.load(Ordering::SeqCst) {
                return;
            }
            self.observer.tick();
            let lanes: Vec<Arc<Lane>> = {
                let lanes = self.lanes.read().unwrap_or_else(|p| p.into_inner());
                lanes.values().cloned().collect()
            };
            let now = Instant::now();
            due = now + Duration::from_secs(3600);
            for lane in lanes {
                if let Some(at) = self.tend(&lane, now) {
                    due = due.min(at);
                }
            }
        }
    }

    /// Drops what expired, starts a try or backlog runs when due; when to look again.
    fn tend(&self, lane: &Arc<Lane>, now: Instant) -> Option<Instant> {
        let mut state = lane.state();
        if state.closed || state.backlog.is_empty() {
            return None;
        }
        let expired: Vec<Entry> = match now.checked_sub(self.limits.horizon) {
            Some(cutoff) => state
                .backlog
                .expired(cutoff)
                .into_iter()
                .filter_map(|key| state.backlog.remove(key))
                .collect(),
            None => Vec::new(),
        };
        let mut due = state.backlog.oldest().map(|q| q + self.limits.horizon);
        let mut runs = 0;
        if state.backlog.next_unsent().is_some() {
            match state.health {
                Health::Down { trying: true, .. } => {}
                Health::Down { next_try, .. } if now < next_try => {
                    due = Some(earliest(due, next_try));
                }
                Health::Down { .. } => {
                    if let Health::Down { trying, .. } = &mut state.health {
                        *trying = true;
                    }
                    runs = 1;
                }
                Health::Up => {
                    let token = state.bucket.next_token(now);
                    if token > now {
                        due = Some(earliest(due, token));
                    } else {
                        runs = state.drain_width.saturating_sub(state.draining);
                    }
                }
            }
        }
        state.draining += runs;
        drop(state);
        self.release(lane, expired, Dropped::Expired);
        for _ in 0..runs {
            self.start_run(lane, None);
        }
        due
    }

    /// Starts one backlog run of `lane` on a caller (its slot is already counted).
    fn start_run(&self, lane: &Arc<Lane>, until: Option<Instant>) {
        let (Some(queue), lane2) = (self.arc(), Arc::clone(lane)) else {
            return;
        };
        let job = Box::new(move || queue.run(&lane2, until));
        if self.calls.submit(Priority::Background, job).is_err() {
            let mut state = lane.state();
            state.draining -= 1;
            if let Health::Down { ref mut trying, .. } = state.health {
                *trying = false;
            }
        }
    }

    /// A backlog run: sends the lane's waiting changes one after another (within its rate, or
    /// all of them by `until` on shutdown) until none is left or a try fails.
    fn run(&self, lane: &Lane, until: Option<Instant>) {
        loop {
            let (key, change, generation, request_id) = {
                let mut state = lane.state();
                if state.closed && until.is_none() {
                    break;
                }
                let Some(key) = state.backlog.next_unsent() else {
                    break;
                };
                if until.is_none() && !state.bucket.take(1, Instant::now()) {
                    break;
                }
                let Some(entry) = state.backlog.get_mut(key) else {
                    break;
                };
                entry.sending = true;
                (
                    key,
                    Arc::clone(&entry.change),
                    entry.generation,
                    entry.request_id.clone(),
                )
            };
            let started = Instant::now();
            let deadline = until.map_or(started + self.limits.timeout, |u| {
                u.min(started + self.limits.timeout)
            });
            let sent = lane.downstream().send(
                &change,
                deadline,
                OnConnectionRefused::GiveUp,
                request_id.as_deref(),
            );
            self.observer
                .tried(&lane.name, &change, &sent, started.elapsed());
            let mut state = lane.state();
            let Some(entry) = state.backlog.get_mut(key) else {
                continue;
            };
            entry.sending = false;
            match sent.class() {
                Class::Transient => {
                    entry.attempts += 1;
                    state.failed(Instant::now());
                    break;
                }
                // Queued again while it was being sent: it goes once more.
                Class::Delivered if entry.generation != generation => state.health = Health::Up,
                class => {
                    state.health = Health::Up;
                    let Some(entry) = state.backlog.remove(key) else {
                        continue;
                    };
                    drop(state);
                    self.forget(&entry);
                    let waited = entry.queued.elapsed();
                    match class {
                        Class::Delivered => {
                            self.observer
                                .delivered(&lane.name, &change, waited, entry.attempts)
                        }
                        _ => self
                            .observer
                            .dropped(&lane.name, &change, Dropped::Declined, waited),
                    }
                }
            }
        }
        let mut state = lane.state();
        state.draining -= 1;
        if let Health::Down { ref mut trying, .. } = state.health {
            *trying = false;
        }
        drop(state);
        self.wake();
    }

    /// Gives every backlog one last try, all lanes at once, within `grace`; then stops the
    /// scheduler and the callers. What is left stays in the spool (returned: how many), or
    /// without one is reported dropped.
    pub fn finish(&self, grace: Duration) -> usize {
        let deadline = Instant::now() + grace;
        self.stopping.store(true, Ordering::SeqCst);
        self.wake();
        if let Some(scheduler) = lock(&self.scheduler).take() {
            let _ = scheduler.join();
        }
        let lanes: Vec<Arc<Lane>> = {
            let lanes = self.lanes.read().unwrap_or_else(|p| p.into_inner());
            lanes.values().cloned().collect()
        };
        for lane in lanes.iter().filter(|l| l.pending() > 0) {
            lane.state().draining += 1;
            self.start_run(lane, Some(deadline));
        }
        // The runs end by the deadline; then nothing is in flight.
        while lanes.iter().any(|l| l.state().draining > 0) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        let mut kept = 0;
        for lane in &lanes {
            let mut state = lane.state();
            state.closed = true;
            let left = state.backlog.take_all();
            drop(state);
            match &self.spool {
                Some(_) => kept += left.len(),
                None => self.release(lane, left, Dropped::Shutdown),
            }
        }
        self.calls.stop();
        kept
    }
}

/// The earlier of an optional instant and another.
fn earliest(a: Option<Instant>, b: Instant) -> Instant {
    a.map_or(b, |a| a.min(b))
}
