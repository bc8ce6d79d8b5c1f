//! What waits: changes queued for a lane (coalesced, bounded, written to the spool before the
//! promise is made), given back when they land or are given up on, and read back at start.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::lane::{Entry, Ready, ENTRY_OVERHEAD};
use super::spool::{self, Record};
use super::{Dropped, Lane, Redelivery};
use crate::change::Change;

impl Redelivery {
    /// Queues `changes` for `lane`, coalescing those already waiting. All or nothing: when the
    /// new entries do not fit, none is added and each is reported dropped. With a spool, the
    /// new entries are on disk when this returns `Ok`.
    pub fn queue(
        &self,
        lane: &Lane,
        changes: &[&Change],
        request_id: Option<&str>,
    ) -> Result<(), Dropped> {
        let now = Instant::now();
        let (keys, records) = match self.reserve(lane, changes, request_id, now) {
            Ok(fresh) => fresh,
            Err((reason, refused)) => {
                for change in refused {
                    self.observer
                        .dropped(&lane.name, change, reason, Duration::ZERO);
                }
                return Err(reason);
            }
        };
        if let (Some(spool), false) = (&self.spool, records.is_empty()) {
            let written = spool.write(&records);
            let mut state = lane.state();
            let mut failed = Vec::new();
            for key in &keys {
                match &written {
                    Ok(file) => {
                        if let Some(entry) = state.backlog.get_mut(*key) {
                            entry.ready = Ready::Yes(Some(Arc::clone(file)));
                        }
                    }
                    Err(_) => failed.extend(state.backlog.remove(*key)),
                }
            }
            drop(state);
            lane.written.notify_all();
            if written.is_err() {
                self.release(lane, failed, Dropped::Spool);
                return Err(Dropped::Spool);
            }
        }
        self.wake();
        Ok(())
    }

    /// Adds the changes not waiting yet (marked being written when there is a spool), within
    /// the bounds; the keys and spool records of what it added, or why not and what is refused.
    #[allow(clippy::type_complexity)] // one private call site; a struct would only rename it
    fn reserve<'c>(
        &self,
        lane: &Lane,
        changes: &[&'c Change],
        request_id: Option<&str>,
        now: Instant,
    ) -> Result<(Vec<u64>, Vec<Record>), (Dropped, Vec<&'c Change>)> {
        let mut state = lane.state();
        loop {
            // An identical change whose spool write is under way: its promise is not made yet.
            let writing = changes.iter().any(|c| {
                state
                    .backlog
                    .find(c)
                    .is_some_and(|(_, e)| matches!(e.ready, Ready::Writing))
            });
            if !writing {
                break;
            }
            state = lane.written.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        if state.closed || self.stopping.load(Ordering::SeqCst) {
            let reason = if self.stopping.load(Ordering::SeqCst) {
                Dropped::Shutdown
            } else {
                Dropped::Removed
            };
            return Err((reason, changes.to_vec()));
        }
        let mut fresh: Vec<&Change> = Vec::new();
        for change in changes {
            match state.backlog.find(change) {
                Some((_, entry)) if entry.sending => entry.generation += 1,
                Some(_) => {}
                None => fresh.push(change),
            }
        }
        let bytes: usize = fresh.iter().map(|c| size_of(c)).sum();
        if !self.take(fresh.len(), bytes) {
            return Err((Dropped::QueueFull, fresh));
        }
        let ready = match self.spool {
            Some(_) => Ready::Writing,
            None => Ready::Yes(None),
        };
        let queued_ms = spool::now_ms();
        let shared_id: Option<Arc<str>> = request_id.map(Arc::from);
        let mut keys = Vec::with_capacity(fresh.len());
        let mut records = Vec::new();
        for change in fresh {
            keys.push(state.backlog.insert(Entry {
                change: Arc::new(change.clone()),
                queued: now,
                attempts: 1,
                generation: 0,
                sending: false,
                ready: ready.clone(),
                bytes: size_of(change),
                request_id: shared_id.clone(),
            }));
            if self.spool.is_some() {
                records.push(Record {
                    downstream: lane.name.clone(),
                    change: change.clone(),
                    queued_ms,
                    request_id: request_id.map(str::to_owned),
                });
            }
        }
        state.arrived();
        Ok((keys, records))
    }

    /// Takes room for `entries` entries of `bytes` bytes in all, if there is that much.
    pub(super) fn take(&self, entries: usize, bytes: usize) -> bool {
        let fits = |used: usize, n: usize, max: usize| used.checked_add(n).filter(|t| *t <= max);
        if self
            .entries
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |e| {
                fits(e, entries, self.limits.max_entries)
            })
            .is_err()
        {
            return false;
        }
        if self
            .bytes
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| {
                fits(b, bytes, self.limits.max_bytes)
            })
            .is_err()
        {
            self.entries.fetch_sub(entries, Ordering::SeqCst);
            return false;
        }
        true
    }

    /// Gives back the room of entries taken out of a lane (and their spool records), and
    /// reports them dropped for `reason` (nothing when delivered: the caller reports that).
    pub(super) fn release(&self, lane: &Lane, entries: Vec<Entry>, reason: Dropped) {
        for entry in entries {
            self.forget(&entry);
            self.observer
                .dropped(&lane.name, &entry.change, reason, entry.queued.elapsed());
        }
    }

    pub(super) fn forget(&self, entry: &Entry) {
        self.entries.fetch_sub(1, Ordering::SeqCst);
        self.bytes.fetch_sub(entry.bytes, Ordering::SeqCst);
        if let (Some(spool), Ready::Yes(Some(file))) = (&self.spool, &entry.ready) {
            spool.resolved(file);
        }
    }

    /// Reads the spool back into the lanes (after they exist): how many changes it recovered,
    /// and a warning per file that could not be read (moved aside).
    pub fn recover(&self) -> (usize, Vec<String>) {
        let Some(spool) = &self.spool else {
            return (0, Vec::new());
        };
        let (records, warnings) = spool.load();
        let (now, now_ms) = (Instant::now(), spool::now_ms());
        let mut recovered = 0;
        for (record, file) in records {
            let lane = {
                let lanes = self.lanes.read().unwrap_or_else(|p| p.into_inner());
                lanes.get(&record.downstream).cloned()
            };
            let waited = Duration::from_millis(now_ms.saturating_sub(record.queued_ms));
            let Some(lane) = lane else {
                spool.resolved(&file);
                self.observer
                    .dropped(&record.downstream, &record.change, Dropped::Removed, waited);
                continue;
            };
            let mut state = lane.state();
            if state.backlog.find(&record.change).is_some() {
                spool.resolved(&file);
                continue;
            }
            let bytes = size_of(&record.change);
            if !self.take(1, bytes) {
                drop(state);
                spool.resolved(&file);
                self.observer
                    .dropped(&lane.name, &record.change, Dropped::QueueFull, waited);
                continue;
            }
            state.backlog.insert(Entry {
                change: Arc::new(record.change),
                queued: now.checked_sub(waited).unwrap_or(now),
                attempts: 1,
                generation: 0,
                sending: false,
                request_id: record.request_id.as_deref().map(Arc::from),
                ready: Ready::Yes(Some(file)),
                bytes,
            });
            recovered += 1;
        }
        self.wake();
        (recovered, warnings)
    }
}

/// The bytes one queued change holds.
fn size_of(change: &Change) -> usize {
    ENTRY_OVERHEAD
        + match change {
            Change::Git { url, branch } => url.len() + branch.len(),
            Change::Image(name) => name.domain.len() + name.image.len(),
        }
}
