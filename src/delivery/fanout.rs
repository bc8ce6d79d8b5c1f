//! Handing a delivery's changes to the downstreams that want them, and combining what they did
//! into one ending: 200 when every one took its changes, 202 when the rest were queued for
//! redelivery, 502 when one refused for good (or the queue was full), and with redelivery off
//! 502/504 as the Go original's single fluxd gave.
//!
//! The handler calls the first downstream itself; the others go to the callers at once, so
//! several downstreams are told concurrently without a thread per downstream per delivery, and
//! a slow one never delays another. Whether a downstream is called at all is its lane's to say
//! (`downstream::redelivery`): one that is down, holds its share of calls already, or is over
//! its rate gets the changes queued at once (or, with redelivery off, a failure).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use super::routes::{Route, Table, Target};
use crate::change::Change;
use crate::downstream::calls::{Calls, Priority};
use crate::downstream::redelivery::{Admit, Lane, Redelivery, Wait};
use crate::downstream::{lock, Class, Downstream, OnConnectionRefused, Sent};
use crate::log;
use crate::metrics;
use crate::verdict::Ending;

/// How a downstream's part of a delivery went, from best to worst: with several downstreams,
/// the worst decides the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Severity {
    Queued,
    TimedOut,
    Failed,
    Throttled,
    QueueFull,
    Declined,
}

/// Why a downstream did not take its changes at once; made only when one did not.
#[derive(Debug)]
struct Failure {
    severity: Severity,
    downstream: String,
    what: What,
}

#[derive(Debug)]
enum What {
    /// A call that failed, and what that usually means for this kind of downstream.
    Call {
        index: usize,
        of: usize,
        change: Change,
        sent: Sent,
        hint: Option<&'static str>,
    },
    /// Not called: see [`Wait`].
    Waiting(Wait),
    /// The notify went wrong in our own code (a panic); the handler answers anyway.
    Panicked,
}

/// At most this many downstreams' failures are spelt out in a request's log line.
const FAILURES_SHOWN: usize = 5;

/// The downstreams of `route` that want some of `changes`, with those they want.
fn plan<'t, 'c>(
    table: &'t Table,
    route: &Route,
    changes: &'c [Change],
) -> Vec<(&'t Target, Vec<&'c Change>)> {
    route
        .targets
        .iter()
        .map(|&i| &table.targets[i])
        .map(|target| {
            let wanted = changes
                .iter()
                .filter(|c| target.downstream.filter.wants(c))
                .collect();
            (target, wanted)
        })
        .filter(|(_, wanted): &(_, Vec<_>)| !wanted.is_empty())
        .collect()
}

fn nobody_wants(changes: &[Change]) -> Ending {
    Ending::Ignored(match changes.len() {
        1 => "no downstream wants this change".into(),
        n => format!("no downstream wants these {n} changes"),
    })
}

/// `--dry-run`: one line per downstream that wants some of `changes`, with the exact bodies it
/// would get (the first few), and nothing sent.
pub(super) fn dry_run(
    table: &Table,
    route: &Route,
    changes: &[Change],
    request_id: &str,
) -> Ending {
    let plan = plan(table, route, changes);
    if plan.is_empty() {
        return nobody_wants(changes);
    }
    for (target, wanted) in &plan {
        let bodies: Vec<String> = wanted
            .iter()
            .take(FAILURES_SHOWN)
            .map(|c| String::from_utf8_lossy(&c.to_json()).into_owned())
            .collect();
        let mut body = bodies.join(" ");
        if wanted.len() > bodies.len() {
            body.push_str(&format!(" … ({} in all)", wanted.len()));
        }
        log::info(
            "dry run: would notify",
            &[
                ("downstream", target.downstream.name.as_str().into()),
                ("to", target.downstream.kind.describe().into()),
                ("changes", wanted.len().into()),
                ("body", body.into()),
                ("request_id", request_id.into()),
            ],
        );
    }
    Ending::DryRun {
        changes: changes.len(),
    }
}

/// Tells every downstream of `route` that wants some of `changes`, by `deadline`.
pub(super) fn notify(
    table: &Table,
    route: &Route,
    changes: &[Change],
    deadline: Instant,
    request_id: &str,
    redelivery: &Arc<Redelivery>,
    calls: &Calls,
) -> Ending {
    let plan = plan(table, route, changes);
    let Some(((first, first_wanted), rest)) = plan.split_first() else {
        return nobody_wants(changes);
    };
    let board = Arc::new(Board::new(rest.len()));
    let mut here = Vec::new();
    for (target, wanted) in rest {
        let job = part_job(target, wanted, deadline, request_id, redelivery, &board);
        if let Err(job) = calls.submit(Priority::Delivery, job) {
            here.push(job);
        }
    }
    let mut failures: Vec<Failure> = notify_one(
        &first.lane,
        &first.downstream,
        first_wanted,
        deadline,
        request_id,
        redelivery,
    )
    .into_iter()
    .collect();
    // No caller to take them (stopping): told here, after the first.
    for job in here {
        job();
    }
    failures.extend(board.wait());
    combine(changes.len(), failures)
}

/// The results of a delivery's parts told by the callers.
struct Board {
    slots: Mutex<(usize, Vec<Failure>)>,
    done: Condvar,
}

impl Board {
    fn new(parts: usize) -> Board {
        Board {
            slots: Mutex::new((parts, Vec::new())),
            done: Condvar::new(),
        }
    }

    fn put(&self, told: Option<Failure>) {
        let mut slots = lock(&self.slots);
        slots.0 -= 1;
        slots.1.extend(told);
        self.done.notify_all();
    }

    /// Waits for every part (each ends by its deadline) and takes their failures.
    fn wait(&self) -> Vec<Failure> {
        let mut slots = lock(&self.slots);
        while slots.0 > 0 {
            slots = self.done.wait(slots).unwrap_or_else(|p| p.into_inner());
        }
        std::mem::take(&mut slots.1)
    }
}

/// One downstream's part, as a job for a caller: it owns what it needs, and always reports.
fn part_job(
    target: &Target,
    wanted: &[&Change],
    deadline: Instant,
    request_id: &str,
    redelivery: &Arc<Redelivery>,
    board: &Arc<Board>,
) -> Box<dyn FnOnce() + Send> {
    let (lane, downstream) = (Arc::clone(&target.lane), Arc::clone(&target.downstream));
    let owned: Vec<Change> = wanted.iter().map(|c| (*c).clone()).collect();
    let request_id = request_id.to_owned();
    let (redelivery, board) = (Arc::clone(redelivery), Arc::clone(board));
    Box::new(move || {
        let wanted: Vec<&Change> = owned.iter().collect();
        let told = catch_unwind(AssertUnwindSafe(|| {
            notify_one(
                &lane,
                &downstream,
                &wanted,
                deadline,
                &request_id,
                &redelivery,
            )
        }))
        .unwrap_or_else(|_| {
            Some(Failure {
                severity: Severity::Failed,
                downstream: lane.name.clone(),
                what: What::Panicked,
            })
        });
        board.put(told);
    })
}

/// Tells one downstream its changes, or queues them; `None` when it took them all.
fn notify_one(
    lane: &Lane,
    downstream: &Downstream,
    wanted: &[&Change],
    deadline: Instant,
    request_id: &str,
    redelivery: &Redelivery,
) -> Option<Failure> {
    let failure = |severity, what| Failure {
        severity,
        downstream: lane.name.clone(),
        what,
    };
    let slot = match redelivery.admit(lane, wanted.len()) {
        Admit::Call(slot) => slot,
        Admit::Queue(wait) => {
            let what = What::Waiting(wait);
            return Some(queue(redelivery, lane, wanted, request_id, what));
        }
        Admit::Refuse(wait) => {
            let severity = match wait {
                Wait::Throttled => Severity::Throttled,
                Wait::Down { .. } | Wait::ShareTaken => Severity::Failed,
            };
            return Some(failure(severity, What::Waiting(wait)));
        }
    };
    let on_refused = if redelivery.enabled() {
        OnConnectionRefused::GiveUp
    } else {
        OnConnectionRefused::Retry
    };
    for (index, change) in wanted.iter().enumerate() {
        let started = Instant::now();
        let sent = downstream.send(change, deadline, on_refused, Some(request_id));
        metrics::get().notified(&lane.name, sent.result_word(), started.elapsed());
        let class = sent.class();
        if class == Class::Delivered {
            continue;
        }
        let timed_out = matches!(sent, Sent::TimedOut);
        let what = What::Call {
            index,
            of: wanted.len(),
            change: (*change).clone(),
            hint: downstream.kind.explain(&sent),
            sent,
        };
        return Some(match class {
            Class::Transient if redelivery.enabled() => {
                redelivery.failed(lane);
                drop(slot);
                queue(redelivery, lane, &wanted[index..], request_id, what)
            }
            Class::Transient if timed_out => failure(Severity::TimedOut, what),
            Class::Transient => failure(Severity::Failed, what),
            _ => {
                redelivery.answered(lane);
                failure(Severity::Declined, what)
            }
        });
    }
    redelivery.answered(lane);
    None
}

/// Queues what a downstream did not take.
fn queue(
    redelivery: &Redelivery,
    lane: &Lane,
    changes: &[&Change],
    request_id: &str,
    what: What,
) -> Failure {
    let severity = match redelivery.queue(lane, changes, Some(request_id)) {
        Ok(()) => Severity::Queued,
        // The queue reported each change dropped.
        Err(_) => Severity::QueueFull,
    };
    Failure {
        severity,
        downstream: lane.name.clone(),
        what,
    }
}

/// One ending for all the downstreams told: the worst of what they did. Queued parts also get
/// one `queued for redelivery` line for the delivery, whatever the number of downstreams.
fn combine(changes: usize, failures: Vec<Failure>) -> Ending {
    let Some(worst) = failures.iter().map(|f| f.severity).max() else {
        return Ending::Notified { changes };
    };
    let queued: Vec<&str> = failures
        .iter()
        .filter(|f| f.severity == Severity::Queued)
        .map(|f| f.downstream.as_str())
        .collect();
    if !queued.is_empty() {
        let shown = queued.len().min(FAILURES_SHOWN);
        let mut names = queued[..shown].join(",");
        if queued.len() > shown {
            names.push_str(&format!(",… ({} in all)", queued.len()));
        }
        log::warn(
            "queued for redelivery",
            &[("downstreams", names.into()), ("changes", changes.into())],
        );
    }
    let cause = Box::new(Failures(failures));
    match worst {
        Severity::Declined => Ending::Declined { changes, cause },
        Severity::QueueFull => Ending::QueueFull { changes, cause },
        Severity::Throttled => Ending::Throttled { changes, cause },
        Severity::Failed => Ending::Failed { changes, cause },
        Severity::TimedOut => Ending::DownstreamTimeout { changes, cause },
        Severity::Queued => Ending::Queued { changes, cause },
    }
}

/// Everything that did not go through at once, for the log line: the first few spelt out.
#[derive(Debug)]
struct Failures(Vec<Failure>);

impl std::fmt::Display for Failures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, failure) in self.0.iter().take(FAILURES_SHOWN).enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            failure.fmt(f)?;
        }
        if self.0.len() > FAILURES_SHOWN {
            write!(
                f,
                "; and {} more downstreams",
                self.0.len() - FAILURES_SHOWN
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for Failures {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0
            .first()
            .map(|f| f as &(dyn std::error::Error + 'static))
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "downstream {}: ", self.downstream)?;
        match &self.what {
            What::Call {
                index,
                of,
                change,
                sent,
                hint,
            } => {
                write!(f, "change {}/{of} ({change}): {sent}", index + 1)?;
                if let Some(hint) = hint {
                    write!(f, " ({hint})")?;
                }
            }
            What::Waiting(Wait::Down { pending }) => write!(
                f,
                "down since a call failed; queued behind {pending} change(s) waiting for redelivery"
            )?,
            What::Waiting(Wait::ShareTaken) => {
                f.write_str("its share of calls is already waiting on it")?
            }
            What::Waiting(Wait::Throttled) => {
                f.write_str("over its rate of calls a second (--notify-rate)")?
            }
            What::Panicked => f.write_str("notifying it panicked")?,
        }
        match self.severity {
            Severity::Queued => f.write_str(" (queued for redelivery)"),
            Severity::QueueFull => f.write_str(" (not queued: the redelivery queue is full)"),
            _ => Ok(()),
        }
    }
}

impl std::error::Error for Failure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.what {
            What::Call { sent, .. } => Some(sent),
            _ => None,
        }
    }
}
