//! The handler pool: a fixed number of threads that run requests' work, each run inside
//! `catch_unwind`, so a panic becomes the work's own 500 and the thread lives on.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;

use super::body::Reservation;
use super::{Busy, Refusal, Request, Response, Work};
use crate::log;

/// One request for the pool: its work, its request, and where the response goes.
struct Job {
    work: Box<dyn Work>,
    request: Request,
    reply: mpsc::SyncSender<Response>,
    /// Held until the work is done with the body.
    _body: Reservation,
}

pub(super) struct Pool {
    jobs: mpsc::Sender<Job>,
    /// Threads running a job right now.
    running: Arc<AtomicUsize>,
}

impl Pool {
    pub(super) fn start(threads: usize) -> Pool {
        let (jobs, inbox) = mpsc::channel::<Job>();
        let inbox = Arc::new(Mutex::new(inbox));
        let running = Arc::new(AtomicUsize::new(0));
        for n in 0..threads {
            let (inbox, running) = (Arc::clone(&inbox), Arc::clone(&running));
            let spawned = thread::Builder::new()
                .name(format!("handler-{n}"))
                .spawn(move || work_loop(&inbox, &running));
            if let Err(e) = spawned {
                log::error("cannot start handler thread", &[("error", log::text(e))]);
            }
        }
        Pool { jobs, running }
    }

    pub(super) fn busy(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }

    /// Runs `work` on a pool thread and waits for its response.
    pub(super) fn run(&self, work: Box<dyn Work>, request: Request, body: Reservation) -> Response {
        let (reply, response) = mpsc::sync_channel(1);
        let job = Job {
            work,
            request,
            reply,
            _body: body,
        };
        if let Err(mpsc::SendError(job)) = self.jobs.send(job) {
            return job.work.refuse(Refusal::PoolStopped);
        }
        response.recv().unwrap_or_else(|_| {
            // Only a panic inside a refusal itself can get here.
            Response::text(500, "Internal server error")
        })
    }
}

fn work_loop(inbox: &Mutex<mpsc::Receiver<Job>>, running: &AtomicUsize) {
    loop {
        let job = {
            let receiver = inbox
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            match receiver.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        let busy = Busy::new(running);
        let Job {
            work,
            request,
            reply,
            _body,
        } = job;
        let response = match catch_unwind(AssertUnwindSafe(|| work.run(request))) {
            Ok(response) => response,
            Err(_) => work.refuse(Refusal::Panic),
        };
        drop(_body);
        drop(busy);
        let _ = reply.send(response);
    }
}
