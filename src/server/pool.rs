//! The handler pool: at most `--threads` requests' work at once, each run inside
//! `catch_unwind`, so a panic becomes the work's own 500 and the thread lives on.
//!
//! When no other work is running, a request's work runs on its connection thread: a lone
//! webhook (the usual case) then costs one thread wake-up, not three. Otherwise it goes to the
//! pool's threads, as before: a job costs one wake-up each way (idle threads wait on one
//! condition variable, of which a new job wakes one; the connection thread waits on its own
//! [`Reply`], reused for every request of the connection), and under load a pool thread takes
//! the next job without sleeping.
//!
//! Why not the plainest design, permits only (every request's work on its connection thread,
//! at most `--threads` at once)? Measured against it with `bench/compare.py` (musl, signed 7 KB
//! pushes, 15 interleaved rounds of 3 s, medians, 2026-12-07): at c=16 permits only answered
//! 13,203 req/s to this pool's 13,881 (-8 %) for 109 us of CPU per push to 97 (+15 %), p99 3.20
//! ms to 1.99 (16 threads meeting at musl's allocator lock instead of 4); at c=1 it measured
//! 5,840 req/s to 5,430 and 102 us to 119. Neither is within 3 % of the other at both, and the
//! c=1 gap is not the pool's: at c=1 both run the work on the connection thread with the same
//! system calls per push (`strace -c -f`: 3 `sendto`, 4 `recvfrom`, 4 `ioctl`, 3 `setsockopt`,
//! 1 `write`; this pool 1 `futex`, permits 2), and one build's own runs differ as much (125 to
//! 149 us per push in four runs of the same binary), following page faults in musl's
//! allocator (`alloc_slot`: 1,472 in one run, 15,083-16,346 in the others, as its groups are
//! unmapped and mapped again). Under load, where a bound on work exists for, the pool is
//! ahead on throughput, CPU and tail, so it stays.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;

use super::body::Reservation;
use super::{Counted, Refusal, Request, Response, Work};
use crate::log;
use crate::sync::lock;

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

/// The jobs waiting, the permits left (work runs on at most `--threads` threads at once,
/// pool or connection threads), the pool threads asleep, and whether the pool is closing.
struct State {
    jobs: VecDeque<Job>,
    free: usize,
    /// Pool threads waiting for a job: with none, nobody needs waking (and `notify_one` is a
    /// system call even when nobody waits).
    idle: usize,
    closing: bool,
}

struct Queue {
    state: Mutex<State>,
    ready: Condvar,
}

impl Queue {
    /// A permit comes back; a thread is woken if a job waits for it.
    fn give_back(&self) {
        let mut state = lock(&self.state);
        state.free += 1;
        let wake = !state.jobs.is_empty() && state.idle > 0;
        drop(state);
        if wake {
            self.ready.notify_one();
        }
    }
}

/// A permit being used; given back when dropped, however the work ended.
struct Permit<'a>(&'a Queue);

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.0.give_back();
    }
}

pub(super) struct Pool {
    queue: Arc<Queue>,
    /// Threads that started; with none, every job is refused.
    threads: usize,
    /// Work running right now, on pool or connection threads.
    running: Arc<AtomicUsize>,
    /// The pool's threads, joined when it closes.
    handles: Mutex<Vec<thread::JoinHandle<()>>>,
}

impl Pool {
    pub(super) fn start(threads: usize) -> Pool {
        let queue = Arc::new(Queue {
            state: Mutex::new(State {
                jobs: VecDeque::new(),
                free: threads,
                idle: 0,
                closing: false,
            }),
            ready: Condvar::new(),
        });
        let running = Arc::new(AtomicUsize::new(0));
        let mut handles = Vec::new();
        for n in 0..threads {
            let (queue, running) = (Arc::clone(&queue), Arc::clone(&running));
            let spawned = thread::Builder::new()
                .name(format!("handler-{n}"))
                .spawn(move || work_loop(&queue, &running));
            match spawned {
                Ok(handle) => handles.push(handle),
                Err(e) => log::error("cannot start handler thread", &[("error", log::text(e))]),
            }
        }
        let started = handles.len();
        lock(&queue.state).free = started;
        Pool {
            queue,
            threads: started,
            running,
            handles: Mutex::new(handles),
        }
    }

    pub(super) fn running(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }

    /// Runs `work` and returns its response: on the calling thread when no other work is running
    /// (no hand-off, no wake-up), else on a pool thread, the response coming back through
    /// `reply`.
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
        let wake = {
            let mut state = lock(&self.queue.state);
            if state.free == self.threads && state.jobs.is_empty() {
                state.free -= 1;
                drop(state);
                let _permit = Permit(&self.queue);
                return run_caught(work, request, body, &self.running);
            }
            state.jobs.push_back(Job {
                work,
                request,
                reply: Arc::clone(reply),
                _body: body,
            });
            state.idle > 0 && state.free > 0
        };
        if wake {
            self.queue.ready.notify_one();
        }
        reply.wait()
    }
}

impl Pool {
    /// Lets the threads finish the jobs queued, then joins them; later work is refused.
    pub(super) fn close(&self) {
        lock(&self.queue.state).closing = true;
        self.queue.ready.notify_all();
        for handle in std::mem::take(&mut *lock(&self.handles)) {
            let _ = handle.join();
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        lock(&self.queue.state).closing = true;
        self.queue.ready.notify_all();
    }
}

/// Runs the work, counted as running; a panic becomes the work's refusal, and a panic in the
/// refusal too a plain 500: somebody is waiting for an answer.
fn run_caught(
    work: Box<dyn Work>,
    request: Request,
    body: Reservation,
    running: &AtomicUsize,
) -> Response {
    let busy = Counted::new(running);
    let response = catch_unwind(AssertUnwindSafe(|| work.run(request)))
        .or_else(|_| catch_unwind(AssertUnwindSafe(|| work.refuse(Refusal::Panic))))
        .unwrap_or_else(|_| Response::text(500, "Internal server error"));
    drop(body);
    drop(busy);
    response
}

fn work_loop(queue: &Queue, running: &AtomicUsize) {
    loop {
        let job = {
            let mut state = lock(&queue.state);
            loop {
                if state.free > 0 {
                    if let Some(job) = state.jobs.pop_front() {
                        state.free -= 1;
                        break job;
                    }
                }
                if state.closing {
                    return;
                }
                state.idle += 1;
                state = queue.ready.wait(state).unwrap_or_else(|p| p.into_inner());
                state.idle -= 1;
            }
        };
        let Job {
            work,
            request,
            reply,
            _body: body,
        } = job;
        let permit = Permit(queue);
        let response = run_caught(work, request, body, running);
        drop(permit);
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
            client: None,
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
        assert_eq!(pool.running(), 0);
    }

    /// A panic, then a panic in the refusal too, are answered, and the next job is served.
    fn panics_are_answered(pool: &Pool) {
        let reply = Arc::new(Reply::default());
        let panicked = call(pool, &reply, Box::new(Echo), "/panic");
        assert_eq!((panicked.status, &*panicked.body), (500, "Panic"));
        let twice = call(pool, &reply, Box::new(Twice), "/x");
        assert_eq!((twice.status, &*twice.body), (500, "Internal server error"));
        let ok = call(pool, &reply, Box::new(Echo), "/ok");
        assert_eq!((ok.status, &*ok.body), (200, "/ok"));
    }

    #[test]
    fn a_panic_is_answered_and_the_threads_live_on() {
        panics_are_answered(&Pool::start(1));
    }

    /// Answers with the name of the thread it ran on, after waiting for `gate` to open, and
    /// keeps the most works that ran at once.
    struct Where {
        gate: Gate,
        now: Arc<AtomicUsize>,
        most: Arc<AtomicUsize>,
    }

    impl Work for Where {
        fn run(&self, _: Request) -> Response {
            let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(now, Ordering::SeqCst);
            let (open, opened) = &*self.gate;
            let mut open = lock(open);
            while !*open {
                open = opened.wait(open).unwrap();
            }
            drop(open);
            self.now.fetch_sub(1, Ordering::SeqCst);
            Response::text(200, thread::current().name().unwrap_or("").to_owned())
        }
        fn refuse(self: Box<Self>, refusal: Refusal) -> Response {
            Response::text(500, format!("{refusal:?}"))
        }
    }

    #[test]
    fn a_lone_request_runs_on_its_own_thread_and_one_among_others_in_the_pool() {
        let pool = Arc::new(Pool::start(2));
        let gate = Arc::new((Mutex::new(true), Condvar::new()));
        let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let work = || {
            Box::new(Where {
                gate: Arc::clone(&gate),
                now: Arc::clone(&now),
                most: Arc::clone(&most),
            })
        };
        let (pool1, alone) = (Arc::clone(&pool), work());
        let lone = thread::Builder::new()
            .name("caller".into())
            .spawn(move || call(&pool1, &Arc::new(Reply::default()), alone, "/"))
            .unwrap();
        assert_eq!(&*lone.join().unwrap().body, "caller");

        // One work held running: the next request is not alone, so it goes to the pool.
        *lock(&gate.0) = false;
        let (pool2, held) = (Arc::clone(&pool), work());
        let holder = thread::Builder::new()
            .name("holder".into())
            .spawn(move || call(&pool2, &Arc::new(Reply::default()), held, "/"))
            .unwrap();
        while pool.running() == 0 {
            thread::yield_now();
        }
        let (pool3, queued) = (Arc::clone(&pool), work());
        let caller = thread::Builder::new()
            .name("caller".into())
            .spawn(move || call(&pool3, &Arc::new(Reply::default()), queued, "/"))
            .unwrap();
        while pool.running() < 2 {
            thread::yield_now();
        }
        open(&gate);
        assert_eq!(&*holder.join().unwrap().body, "holder");
        assert!(caller.join().unwrap().body.starts_with("handler-"));
        assert_eq!(pool.running(), 0);
    }

    type Gate = Arc<(Mutex<bool>, Condvar)>;

    /// A gate shut until `open`, and counters for [`Where`].
    fn shut() -> (Gate, Arc<AtomicUsize>, Arc<AtomicUsize>) {
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        (
            gate,
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
        )
    }

    fn open(gate: &(Mutex<bool>, Condvar)) {
        *lock(&gate.0) = true;
        gate.1.notify_all();
    }

    #[test]
    fn no_more_works_run_at_once_than_the_pool_has_threads() {
        let pool = Arc::new(Pool::start(2));
        let (gate, now, most) = shut();
        let callers: Vec<_> = (0..8)
            .map(|_| {
                let pool = Arc::clone(&pool);
                let (gate, now, most) = (Arc::clone(&gate), Arc::clone(&now), Arc::clone(&most));
                thread::spawn(move || {
                    let reply = Arc::new(Reply::default());
                    (0..20)
                        .map(|_| {
                            let work = Box::new(Where {
                                gate: Arc::clone(&gate),
                                now: Arc::clone(&now),
                                most: Arc::clone(&most),
                            });
                            call(&pool, &reply, work, "/").status
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        // With the gate shut, two works start and the six other callers wait.
        while pool.running() < 2 {
            thread::yield_now();
        }
        thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!((now.load(Ordering::SeqCst), pool.running()), (2, 2));
        open(&gate);
        for caller in callers {
            assert_eq!(caller.join().unwrap(), vec![200; 20]);
        }
        assert_eq!(most.load(Ordering::SeqCst), 2);
        assert_eq!(pool.running(), 0);
    }

    #[test]
    fn a_panic_on_a_pool_thread_is_answered_and_the_thread_lives_on() {
        let pool = Arc::new(Pool::start(2));
        let (gate, now, most) = shut();
        let (pool2, held) = (
            Arc::clone(&pool),
            Box::new(Where {
                gate: Arc::clone(&gate),
                now,
                most,
            }),
        );
        let holder = thread::spawn(move || call(&pool2, &Arc::new(Reply::default()), held, "/"));
        while pool.running() == 0 {
            thread::yield_now();
        }
        // Not alone: these go to the pool's one free thread.
        panics_are_answered(&pool);
        open(&gate);
        assert_eq!(holder.join().unwrap().status, 200);
        assert_eq!(pool.running(), 0);
    }

    #[test]
    fn a_pool_without_threads_refuses() {
        let pool = Pool::start(0);
        let reply = Arc::new(Reply::default());
        let refused = call(&pool, &reply, Box::new(Echo), "/ok");
        assert_eq!((refused.status, &*refused.body), (500, "PoolStopped"));
    }
}
