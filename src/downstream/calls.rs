//! The callers: a fixed set of threads that make downstream calls for whoever cannot make them
//! itself: the other downstreams of a delivery that feeds several (its handler calls the first
//! itself), and the background redelivery of a backlog. A delivery's calls go first, so a
//! backlog draining in the background never delays a new push.
//!
//! Fixed, not per call: threads do not grow with the number of downstreams or deliveries. How
//! many of them one downstream may hold is bounded by its lane's share (`redelivery`), so a
//! hanging downstream holds at most its share and the others' calls go on.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};

use super::lock;

/// One call (or a run of calls) to make.
pub type Job = Box<dyn FnOnce() + Send>;

/// Which queue a job waits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// A delivery's own calls: its sender is waiting.
    Delivery,
    /// A backlog being redelivered.
    Background,
}

#[derive(Default)]
struct Queues {
    delivery: VecDeque<Job>,
    background: VecDeque<Job>,
    stopping: bool,
}

pub struct Calls {
    queues: Mutex<Queues>,
    ready: Condvar,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// The stack of a caller: enough for a TLS handshake and a reply's JSON, as a connection
/// thread's (whose 512 KiB was measured with the same work).
const CALLER_STACK_BYTES: usize = 512 * 1024;

impl Calls {
    /// Starts `threads` callers (at least one).
    pub fn start(threads: usize) -> Arc<Calls> {
        let calls = Arc::new(Calls {
            queues: Mutex::new(Queues::default()),
            ready: Condvar::new(),
            threads: Mutex::new(Vec::new()),
        });
        let mut started = Vec::new();
        for n in 0..threads.max(1) {
            let this = Arc::clone(&calls);
            let spawned = thread::Builder::new()
                .name(format!("notify-{n}"))
                .stack_size(CALLER_STACK_BYTES)
                .spawn(move || this.work());
            if let Ok(handle) = spawned {
                started.push(handle);
            }
        }
        *lock(&calls.threads) = started;
        calls
    }

    /// Queues `job`; it comes back when the callers are stopping (or none could start), for
    /// the caller to run itself or give up.
    pub fn submit(&self, priority: Priority, job: Job) -> Result<(), Job> {
        let mut queues = lock(&self.queues);
        if queues.stopping || lock(&self.threads).is_empty() {
            return Err(job);
        }
        match priority {
            Priority::Delivery => queues.delivery.push_back(job),
            Priority::Background => queues.background.push_back(job),
        }
        drop(queues);
        self.ready.notify_one();
        Ok(())
    }

    fn work(&self) {
        loop {
            let job = {
                let mut queues = lock(&self.queues);
                loop {
                    if let Some(job) = queues.delivery.pop_front() {
                        break job;
                    }
                    if let Some(job) = queues.background.pop_front() {
                        break job;
                    }
                    if queues.stopping {
                        return;
                    }
                    queues = self.ready.wait(queues).unwrap_or_else(|p| p.into_inner());
                }
            };
            // A panic in a call must not take a caller with it: the job's own guards (call
            // slots, results) are dropped during the unwind and report it.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
        }
    }

    /// Runs what is queued, then stops and joins every caller.
    pub fn stop(&self) {
        lock(&self.queues).stopping = true;
        self.ready.notify_all();
        let threads = std::mem::take(&mut *lock(&self.threads));
        for thread in threads {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn delivery_calls_go_before_the_backlog_and_stop_joins_after_the_queue_drains() {
        let calls = Calls::start(1);
        let (gate_tx, gate_rx) = mpsc::channel::<()>();
        let order = Arc::new(Mutex::new(Vec::new()));
        // The one caller is held, so what follows waits in the queues.
        calls
            .submit(
                Priority::Background,
                Box::new(move || {
                    let _ = gate_rx.recv_timeout(Duration::from_secs(5));
                }),
            )
            .map_err(|_| ())
            .unwrap();
        thread::sleep(Duration::from_millis(20));
        for (priority, name) in [
            (Priority::Background, "backlog"),
            (Priority::Delivery, "delivery"),
        ] {
            let order = Arc::clone(&order);
            calls
                .submit(priority, Box::new(move || lock(&order).push(name)))
                .map_err(|_| ())
                .unwrap();
        }
        gate_tx.send(()).unwrap();
        calls.stop();
        assert_eq!(*lock(&order), vec!["delivery", "backlog"]);
        assert!(calls.submit(Priority::Delivery, Box::new(|| {})).is_err());
    }

    #[test]
    fn a_panicking_job_leaves_its_caller_alive() {
        let calls = Calls::start(1);
        let done = Arc::new(AtomicUsize::new(0));
        calls
            .submit(Priority::Delivery, Box::new(|| panic!("in a call")))
            .map_err(|_| ())
            .unwrap();
        let counter = Arc::clone(&done);
        calls
            .submit(
                Priority::Delivery,
                Box::new(move || {
                    counter.fetch_add(1, Ordering::SeqCst);
                }),
            )
            .map_err(|_| ())
            .unwrap();
        calls.stop();
        assert_eq!(done.load(Ordering::SeqCst), 1);
    }
}
