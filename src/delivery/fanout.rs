//! Handing a delivery's changes to the downstreams that want them, and combining what they did
//! into one ending: 200 when every one took its changes, 202 when the rest were queued for
//! redelivery, 502 when one refused for good (or the queue was full), and with redelivery off
//! 502/504 as the Go original's single fluxd gave.
//!
//! Several downstreams are told at once, each on its own thread, so a slow one never delays
//! another. While a downstream has changes waiting for redelivery, or already has its share of
//! calls waiting on it, new changes for it join the queue at once instead of waiting on it.

use std::thread;
use std::time::Instant;

use super::routes::{Route, Slot, Table, Target};
use crate::change::Change;
use crate::downstream::redelivery::Redelivery;
use crate::downstream::{Class, OnRefused, Sent};
use crate::log;
use crate::metrics;
use crate::verdict::Ending;

/// What one downstream did with its share of a delivery, from best to worst: with several
/// downstreams, the worst decides the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Severity {
    Delivered,
    Queued,
    TimedOut,
    Failed,
    QueueFull,
    Refused,
}

/// One downstream's result, and why it is not a plain success.
struct Told(Severity, Option<Failure>);

impl Told {
    const DELIVERED: Told = Told(Severity::Delivered, None);

    fn failed(severity: Severity, why: Failure) -> Told {
        Told(severity, Some(why))
    }
}

/// Why a downstream did not take a change at once.
#[derive(Debug)]
struct Failure {
    downstream: String,
    what: What,
}

#[derive(Debug)]
enum What {
    /// A call that failed.
    Call {
        index: usize,
        of: usize,
        change: Change,
        sent: Sent,
    },
    /// Not called: it has changes waiting for redelivery.
    Waiting { pending: usize },
    /// Not called: its share of calls is already waiting on it.
    Busy,
}

/// Tells every downstream of `route` that wants some of `changes`, by `deadline`.
pub(super) fn tell(
    table: &Table,
    route: &Route,
    changes: &[Change],
    deadline: Instant,
    redelivery: &Redelivery,
) -> Ending {
    let plan: Vec<(&Target, Vec<&Change>)> = route
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
        .collect();
    if plan.is_empty() {
        return Ending::Ignored(match changes.len() {
            1 => "no downstream wants this change".into(),
            n => format!("no downstream wants these {n} changes"),
        });
    }
    let told = tell_all(&plan, deadline, redelivery);
    combine(changes.len(), told)
}

/// Each downstream on its own thread (the first on this one).
fn tell_all(
    plan: &[(&Target, Vec<&Change>)],
    deadline: Instant,
    redelivery: &Redelivery,
) -> Vec<Told> {
    let tell =
        |(target, wanted): &(&Target, Vec<&Change>)| tell_one(target, wanted, deadline, redelivery);
    let Some((first, rest)) = plan.split_first() else {
        return Vec::new();
    };
    if rest.is_empty() {
        return vec![tell(first)];
    }
    thread::scope(|scope| {
        let spawned: Vec<_> = rest
            .iter()
            .map(|part| {
                let handle = thread::Builder::new()
                    .name("tell".into())
                    .spawn_scoped(scope, move || tell(part));
                (part, handle)
            })
            .collect();
        let mut told = vec![tell(first)];
        for (part, handle) in spawned {
            told.push(match handle {
                Ok(handle) => handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                // No thread to spare: tell it here, after the others.
                Err(_) => tell(part),
            });
        }
        told
    })
}

fn tell_one(
    target: &Target,
    wanted: &[&Change],
    deadline: Instant,
    redelivery: &Redelivery,
) -> Told {
    let _slot = match gate(target, wanted, redelivery) {
        Gate::Open(slot) => slot,
        Gate::Queued(told) => return told,
    };
    let on_refused = if redelivery.enabled() {
        OnRefused::GiveUp
    } else {
        OnRefused::Retry
    };
    for (index, change) in wanted.iter().enumerate() {
        let started = Instant::now();
        let sent = target.downstream.send(change, deadline, on_refused);
        metrics::get().notified(
            &target.downstream.name,
            sent.result_word(),
            started.elapsed(),
        );
        let class = sent.class();
        let failed = Failure {
            downstream: target.downstream.name.clone(),
            what: What::Call {
                index,
                of: wanted.len(),
                change: (*change).clone(),
                sent,
            },
        };
        match class {
            Class::Delivered => continue,
            Class::Permanent => return Told::failed(Severity::Refused, failed),
            Class::Transient if redelivery.enabled() => {
                return queue(redelivery, target, &wanted[index..], failed)
            }
            Class::Transient if failed.timed_out() => {
                return Told::failed(Severity::TimedOut, failed)
            }
            Class::Transient => return Told::failed(Severity::Failed, failed),
        }
    }
    Told::DELIVERED
}

/// Whether a downstream is called now.
enum Gate<'a> {
    /// Yes, holding a call slot when redelivery is on.
    Open(Option<Slot<'a>>),
    /// No: the changes joined its queue.
    Queued(Told),
}

/// With redelivery on, a downstream that has changes waiting, or its share of calls already
/// waiting on it, is not called: the changes join its queue at once.
fn gate<'a>(target: &'a Target, wanted: &[&Change], redelivery: &Redelivery) -> Gate<'a> {
    if !redelivery.enabled() {
        return Gate::Open(None);
    }
    let name = &target.downstream.name;
    let why = |what| Failure {
        downstream: name.clone(),
        what,
    };
    let pending = redelivery.pending(name);
    if pending > 0 {
        return Gate::Queued(queue(
            redelivery,
            target,
            wanted,
            why(What::Waiting { pending }),
        ));
    }
    match target.enter() {
        Some(slot) => Gate::Open(Some(slot)),
        None => Gate::Queued(queue(redelivery, target, wanted, why(What::Busy))),
    }
}

/// Queues what `target` did not take, and says so in the log.
fn queue(redelivery: &Redelivery, target: &Target, changes: &[&Change], why: Failure) -> Told {
    let name = &target.downstream.name;
    let owned: Vec<Change> = changes.iter().map(|c| (*c).clone()).collect();
    match redelivery.queue(name, &owned) {
        Ok(()) => {
            log::warn(
                "queued for redelivery",
                &[
                    ("downstream", name.into()),
                    ("changes", owned.len().into()),
                    ("pending", redelivery.pending(name).into()),
                    ("detail", log::text(&why)),
                ],
            );
            Told::failed(Severity::Queued, why)
        }
        // The queue reported each change dropped.
        Err(_) => Told::failed(Severity::QueueFull, why),
    }
}

/// One ending for all the downstreams told: the worst of what they did.
fn combine(changes: usize, told: Vec<Told>) -> Ending {
    let worst = told
        .iter()
        .map(|t| t.0)
        .max()
        .unwrap_or(Severity::Delivered);
    let cause = Box::new(Failures(told.into_iter().filter_map(|t| t.1).collect()));
    match worst {
        Severity::Refused => Ending::Refused { changes, cause },
        Severity::QueueFull => Ending::QueueFull { changes, cause },
        Severity::Failed => Ending::Failed { changes, cause },
        Severity::TimedOut => Ending::DownstreamTimeout { changes, cause },
        Severity::Queued => Ending::Queued { changes, cause },
        Severity::Delivered => Ending::Notified { changes },
    }
}

/// Everything that did not go through at once, for the log line.
#[derive(Debug)]
struct Failures(Vec<Failure>);

impl std::fmt::Display for Failures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, failure) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            failure.fmt(f)?;
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

impl Failure {
    fn timed_out(&self) -> bool {
        matches!(
            self.what,
            What::Call {
                sent: Sent::TimedOut,
                ..
            }
        )
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
            } => write!(f, "change {}/{of} ({change}): {sent}", index + 1),
            What::Waiting { pending } => {
                write!(
                    f,
                    "queued behind {pending} change(s) waiting for redelivery"
                )
            }
            What::Busy => f.write_str("its share of calls is already waiting on it"),
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
