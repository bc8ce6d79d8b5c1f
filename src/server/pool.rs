//! The handler pool: a fixed number of threads that run requests' work, each run inside
//! `catch_unwind`, so a panic becomes the work's own 500 and the thread lives on.
//!
//! A job costs one wake-up each way: idle threads wait on one condition variable, of which a
//! new job wakes one, and the connection thread waits on its own [`Reply`], reused for every
//! request of the connection. (A channel behind a mutex woke a second idle thread per job only
//! for it to block again, and allocated a reply channel per job.)

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;

use super::body::Reservation;
use super::{Busy, Refusal, Request, Response, Work};
use crate::log;

/// One request for the pool: its work, its request, and where the response goes.
struct Job {
    work: Box<dyn Work>,
    request: Request,
    reply: Arc<Reply>,
    /// Held until the work is done with the body.
    _body: Reservation,
}

/// Where a pool thread leaves a response for the connection thread waiting on it.
#[derive(Default)]
pub(super) struct Reply {
    response: Mutex<Option<Response>>,
    ready: Condvar,
}

impl Reply {
    fn put(&self, response: Response) {
        *lock(&self.response) = Some(response);
        self.ready.notify_one();
    }

    fn wait(&self) -> Response {
        let mut slot = lock(&self.response);
        loop {
            if let Some(response) = slot.take() {
                return response;
            }
            slot = self.ready.wait(slot).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// The jobs waiting for a thread, and whether the pool is closing.
#[derive(Default)]
struct Queue {
    jobs: Mutex<(VecDeque<Job>, bool)>,
    ready: Condvar,
}

pub(super) struct Pool {
    queue: Arc<Queue>,
    /// Threads that started; with none, every job is refused.
    threads: usize,
    /// Threads running a job right now.
    running: Arc<AtomicUsize>,
}

impl Pool {
    pub(super) fn start(threads: usize) -> Pool {
        let queue = Arc::new(Queue::default());
        let running = Arc::new(AtomicUsize::new(0));
        let mut started = 0;
        for n in 0..threads {
            let (queue, running) = (Arc::clone(&queue), Arc::clone(&running));
            let spawned = thread::Builder::new()
                .name(format!("handler-{n}"))
                .spawn(move || work_loop(&queue, &running));
            match spawned {
                Ok(_) => started += 1,
                Err(e) => log::error("cannot start handler thread", &[("error", log::text(e))]),
            }
        }
        Pool {
            queue,
            threads: started,
            running,
        }
    }

    pub(super) fn busy(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }

    /// Runs `work` on a pool thread and waits for its response, which comes through `reply`.
    pub(super) fn run(
        &self,
        reply: &Arc<Reply>,
        work: Box<dyn Work>,
        request: Request,
        body: Reservation,
    ) -> Response {
        if self.threads == 0 {
            return work.refuse(Refusal::PoolStopped);
        }
        let job = Job {
            work,
            request,
            reply: Arc::clone(reply),
            _body: body,
        };
        lock(&self.queue.jobs).0.push_back(job);
        self.queue.ready.notify_one();
        reply.wait()
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        lock(&self.queue.jobs).1 = true;
        self.queue.ready.notify_all();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn work_loop(queue: &Queue, running: &AtomicUsize) {
    loop {
        let job = {
            let mut jobs = lock(&queue.jobs);
            loop {
                if let Some(job) = jobs.0.pop_front() {
                    break job;
                }
                if jobs.1 {
                    return;
                }
                jobs = queue.ready.wait(jobs).unwrap_or_else(|p| p.into_inner());
            }
        };
        let busy = Busy::new(running);
        let Job {
            work,
            request,
            reply,
            _body,
        } = job;
        // A panic in the refusal too must still answer: the connection thread is waiting.
        let response = catch_unwind(AssertUnwindSafe(|| work.run(request)))
            .or_else(|_| catch_unwind(AssertUnwindSafe(|| work.refuse(Refusal::Panic))))
            .unwrap_or_else(|_| Response::text(500, "Internal server error"));
        drop(_body);
        drop(busy);
        reply.put(response);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::super::body::{BodyBuf, Budget};
    use super::super::{Head, Listener};
    use super::*;

    /// Answers with its request's target; panics for `/panic`.
    struct Echo;

    impl Work for Echo {
        fn run(&self, request: Request) -> Response {
            assert_ne!(request.head.target, "/panic", "asked to");
            Response::text(200, request.head.target)
        }
        fn refuse(self: Box<Self>, refusal: Refusal) -> Response {
            Response::text(500, format!("{refusal:?}"))
        }
    }

    /// Panics in its work and in its refusal.
    struct Twice;

    impl Work for Twice {
        fn run(&self, _: Request) -> Response {
            panic!("in the work")
        }
        fn refuse(self: Box<Self>, _: Refusal) -> Response {
            panic!("in the refusal")
        }
    }

    fn call(pool: &Pool, reply: &Arc<Reply>, work: Box<dyn Work>, target: &str) -> Response {
        let head = Head {
            method: "POST".into(),
            target: target.into(),
            minor: 1,
            headers: Vec::new(),
            listener: Listener::Main,
            started: Instant::now(),
        };
        let request = Request {
            head,
            body: Vec::new(),
        };
        let (_, body) = BodyBuf::new(&Arc::new(Budget::new(0)), 0).into_parts();
        pool.run(reply, work, request, body)
    }

    #[test]
    fn every_caller_gets_its_own_response() {
        let pool = Arc::new(Pool::start(2));
        let callers: Vec<_> = (0..8)
            .map(|n| {
                let pool = Arc::clone(&pool);
                thread::spawn(move || {
                    let reply = Arc::new(Reply::default());
                    (0..50)
                        .map(|i| call(&pool, &reply, Box::new(Echo), &format!("c{n}-{i}")).body)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for (n, caller) in callers.into_iter().enumerate() {
            let bodies = caller.join().unwrap();
            let expected: Vec<String> = (0..50).map(|i| format!("c{n}-{i}")).collect();
            assert_eq!(bodies, expected);
        }
        assert_eq!(pool.busy(), 0);
    }

    #[test]
    fn a_panic_is_answered_and_the_threads_live_on() {
        let pool = Pool::start(1);
        let reply = Arc::new(Reply::default());
        let panicked = call(&pool, &reply, Box::new(Echo), "/panic");
        assert_eq!((panicked.status, &*panicked.body), (500, "Panic"));
        let twice = call(&pool, &reply, Box::new(Twice), "/x");
        assert_eq!((twice.status, &*twice.body), (500, "Internal server error"));
        let ok = call(&pool, &reply, Box::new(Echo), "/ok");
        assert_eq!((ok.status, &*ok.body), (200, "/ok"));
    }

    #[test]
    fn a_pool_without_threads_refuses() {
        let pool = Pool::start(0);
        let reply = Arc::new(Reply::default());
        let refused = call(&pool, &reply, Box::new(Echo), "/ok");
        assert_eq!((refused.status, &*refused.body), (500, "PoolStopped"));
    }
}
