use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::lane::{Health, ENTRY_OVERHEAD};

use super::*;
use crate::downstream::{Filter, Kind};

#[derive(Default)]
struct Seen {
    drops: Mutex<Vec<(String, Dropped)>>,
    delivered: Mutex<Vec<(String, Duration)>>,
}

impl Observer for Seen {
    fn tried(&self, _: &str, _: &Change, _: &Sent, _: Duration) {}
    fn delivered(&self, _: &str, change: &Change, waited: Duration, _: u32) {
        lock(&self.delivered).push((change.to_string(), waited));
    }
    fn dropped(&self, downstream: &str, change: &Change, reason: Dropped, _: Duration) {
        lock(&self.drops).push((format!("{downstream} {change}"), reason));
    }
}

fn limits(max_entries: usize) -> Limits {
    Limits {
        horizon: Duration::from_secs(60),
        max_entries,
        max_bytes: 1 << 20,
        timeout: Duration::from_millis(300),
        rate: 0.0,
    }
}

/// A queue with one lane "d" whose downstream is `api` (nothing listens on port 9 of loopback:
/// its tries fail at once).
fn queue_with(
    limits: Limits,
    api: &str,
    share: usize,
    spool: Option<Spool>,
) -> (Arc<Redelivery>, Arc<Lane>, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let queue = Redelivery::new(limits, seen.clone(), Calls::start(4), spool);
    let down = Downstream::new("d", Kind::Fluxd { api: api.into() }, Filter::default());
    let lane = queue.lanes(&[Arc::new(down)], share).remove(0);
    (queue, lane, seen)
}

fn queue_of(max_entries: usize) -> (Arc<Redelivery>, Arc<Lane>, Arc<Seen>) {
    queue_with(limits(max_entries), "http://127.0.0.1:9/api/flux", 4, None)
}

fn git(repo: &str) -> Change {
    Change::git(format!("git@h:o/{repo}.git"), "main")
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn identical_changes_are_one_entry_and_the_bound_is_all_or_nothing() {
    let (queue, lane, seen) = queue_of(3);
    let (a, b, c, e) = (git("a"), git("b"), git("c"), git("e"));
    assert!(queue.queue(&lane, &[&a, &b], None).is_ok());
    assert!(queue.queue(&lane, &[&a], None).is_ok());
    assert_eq!(queue.pending("d"), 2);
    assert!(queue.queue(&lane, &[&b, &a], None).is_ok());
    assert_eq!(queue.pending("d"), 2);
    // Two new ones do not fit in the one place left: neither is added.
    assert_eq!(queue.queue(&lane, &[&c, &e], None), Err(Dropped::QueueFull));
    assert_eq!(queue.pending("d"), 2);
    assert_eq!(queue.entries.load(Ordering::SeqCst), 2);
    assert_eq!(
        lock(&seen.drops).clone(),
        vec![
            ("d git git@h:o/c.git main".to_owned(), Dropped::QueueFull),
            ("d git git@h:o/e.git main".to_owned(), Dropped::QueueFull),
        ]
    );
    assert!(queue.queue(&lane, &[&c], None).is_ok());
    assert_eq!(queue.pending_by_downstream(), vec![("d".to_owned(), 3)]);
    queue.finish(Duration::ZERO);
}

#[test]
fn the_bytes_are_bounded_as_well_as_the_entries() {
    let (queue, lane, _) = queue_with(
        Limits {
            max_bytes: 2 * (ENTRY_OVERHEAD + 200),
            ..limits(100)
        },
        "http://127.0.0.1:9/api/flux",
        4,
        None,
    );
    let long = |n: usize| Change::git("u".repeat(100), &"b".repeat(100 - n));
    assert!(queue.queue(&lane, &[&long(0)], None).is_ok());
    assert!(queue.queue(&lane, &[&long(1)], None).is_ok());
    assert_eq!(
        queue.queue(&lane, &[&long(2)], None),
        Err(Dropped::QueueFull)
    );
    assert_eq!(queue.pending("d"), 2);
    queue.finish(Duration::ZERO);
}

#[test]
fn a_downstream_that_leaves_the_config_drops_its_entries() {
    let (queue, lane, seen) = queue_of(10);
    assert!(queue.queue(&lane, &[&git("a")], None).is_ok());
    queue.retain(&[]);
    assert_eq!(
        lock(&seen.drops).clone(),
        vec![("d git git@h:o/a.git main".to_owned(), Dropped::Removed)]
    );
    assert_eq!(queue.entries.load(Ordering::SeqCst), 0);
    assert_eq!(
        queue.queue(&lane, &[&git("a")], None),
        Err(Dropped::Removed)
    );
    queue.finish(Duration::ZERO);
}

#[test]
fn finish_gives_one_last_try_and_reports_what_is_left() {
    let (queue, lane, seen) = queue_of(10);
    assert!(queue.queue(&lane, &[&git("a"), &git("b")], None).is_ok());
    let started = Instant::now();
    assert_eq!(queue.finish(Duration::from_millis(500)), 0);
    assert!(started.elapsed() < Duration::from_secs(1));
    let dropped: Vec<Dropped> = lock(&seen.drops).iter().map(|(_, r)| *r).collect();
    assert_eq!(dropped, vec![Dropped::Shutdown, Dropped::Shutdown]);
    // Nothing is queued once stopping.
    assert_eq!(
        queue.queue(&lane, &[&git("c")], None),
        Err(Dropped::Shutdown)
    );
}

/// A stand-in downstream: answers 202 after `delay`, counting the most calls at once; closed
/// (refusing) until `open` is set.
struct Stand {
    api: String,
    open: Arc<AtomicBool>,
    now: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
    calls: Arc<AtomicUsize>,
}

fn stand(delay: Duration) -> Stand {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let api = format!("http://{}/api/flux", listener.local_addr().unwrap());
    let open = Arc::new(AtomicBool::new(true));
    let (now, most, calls) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let (o, n, m, c) = (open.clone(), now.clone(), most.clone(), calls.clone());
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (o, n, m, c) = (o.clone(), n.clone(), m.clone(), c.clone());
            thread::spawn(move || {
                let mut stream = stream;
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    // One request: its head, then its Content-Length bytes.
                    let head_end = loop {
                        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                            break end + 4;
                        }
                        match stream.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&got[..head_end]).to_ascii_lowercase();
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    while got.len() < head_end + length {
                        match stream.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                        }
                    }
                    got.drain(..head_end + length);
                    if !o.load(Ordering::SeqCst) {
                        return;
                    }
                    let at_once = n.fetch_add(1, Ordering::SeqCst) + 1;
                    m.fetch_max(at_once, Ordering::SeqCst);
                    thread::sleep(delay);
                    n.fetch_sub(1, Ordering::SeqCst);
                    c.fetch_add(1, Ordering::SeqCst);
                    let ok = b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n";
                    if stream.write_all(ok).is_err() {
                        return;
                    }
                }
            });
        }
    });
    Stand {
        api,
        open,
        now,
        most,
        calls,
    }
}

/// Once the downstream answers, the backlog drains more than one call at a time (at most half
/// the share), and a new change is admitted for a direct call while it drains.
#[test]
fn a_backlog_drains_concurrently_and_new_changes_go_directly() {
    let stand = stand(Duration::from_millis(20));
    let (queue, lane, seen) = queue_with(limits(1000), &stand.api, 4, None);
    let changes: Vec<Change> = (0..40).map(|i| git(&format!("r{i}"))).collect();
    let refs: Vec<&Change> = changes.iter().collect();
    assert!(queue.queue(&lane, &refs, None).is_ok());
    wait_for("the drain to start", || {
        stand.now.load(Ordering::SeqCst) > 0
    });
    match queue.admit(&lane, 1) {
        Admit::Call(_) => {}
        _ => panic!("a new change waits behind the backlog"),
    }
    wait_for("the backlog to drain", || lock(&seen.delivered).len() == 40);
    assert_eq!(stand.most.load(Ordering::SeqCst), 2, "half of a share of 4");
    assert_eq!(queue.pending("d"), 0);
    assert_eq!(stand.now.load(Ordering::SeqCst), 0);
    queue.finish(Duration::ZERO);
}

/// A down downstream is tried once per second while changes keep arriving (never a burst),
/// and the first answer ends the back-off: then changes are admitted directly again.
#[test]
fn a_down_lane_is_tried_every_second_while_changes_arrive_and_comes_back_at_once() {
    let stand = stand(Duration::ZERO);
    stand.open.store(false, Ordering::SeqCst);
    let (queue, lane, _) = queue_with(limits(1000), &stand.api, 4, None);
    queue.failed(&lane);
    let started = Instant::now();
    let mut tries = Vec::new();
    let mut i = 0;
    // For 3.5 s a change arrives every 100 ms; the lane stays down.
    while started.elapsed() < Duration::from_millis(3500) {
        assert!(matches!(
            queue.admit(&lane, 1),
            Admit::Queue(Wait::Down { .. })
        ));
        assert!(queue.queue(&lane, &[&git(&format!("r{i}"))], None).is_ok());
        i += 1;
        if let Health::Down { last_try, .. } = lane.state().health {
            if !tries.contains(&last_try) {
                tries.push(last_try);
            }
        }
        thread::sleep(Duration::from_millis(100));
    }
    // First failure at 0, then about one try a second: never more (no burst), never fewer.
    assert!((3..=5).contains(&tries.len()), "{} tries", tries.len());
    for pair in tries.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(gap >= Duration::from_millis(900), "{gap:?}");
    }
    stand.open.store(true, Ordering::SeqCst);
    wait_for("the lane to come back", || {
        lane.state().health == Health::Up
    });
    assert!(matches!(queue.admit(&lane, 1), Admit::Call(_)));
    wait_for("the backlog to drain", || queue.pending("d") == 0);
    assert!(stand.calls.load(Ordering::SeqCst) >= i);
    queue.finish(Duration::ZERO);
}

#[test]
fn the_rate_holds_direct_calls_and_the_backlog() {
    let stand = stand(Duration::ZERO);
    let (queue, lane, seen) = queue_with(
        Limits {
            rate: 10.0,
            ..limits(1000)
        },
        &stand.api,
        4,
        None,
    );
    let admitted = (0..30)
        .filter(|_| matches!(queue.admit(&lane, 1), Admit::Call(_)))
        .count();
    assert_eq!(admitted, 10, "one second's worth");
    let changes: Vec<Change> = (0..10).map(|i| git(&format!("r{i}"))).collect();
    let refs: Vec<&Change> = changes.iter().collect();
    assert!(queue.queue(&lane, &refs, None).is_ok());
    let started = Instant::now();
    wait_for("the throttled backlog", || {
        lock(&seen.delivered).len() == 10
    });
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(700),
        "10 calls at 10/s took {took:?}"
    );
    queue.finish(Duration::ZERO);
}

/// Queued changes are on disk before `queue` returns; a new process on the same spool
/// redelivers them with the time they already waited.
#[test]
fn a_spooled_change_survives_the_process_with_its_waiting_time() {
    let dir = std::env::temp_dir().join(format!(
        "flux-recv-redelivery-spool-{}-{}",
        std::process::id(),
        spool::now_ms()
    ));
    let dead = "http://127.0.0.1:9/api/flux";
    let (queue, lane, _) = queue_with(limits(100), dead, 4, Some(Spool::open(&dir).unwrap()));
    assert!(queue.queue(&lane, &[&git("a"), &git("b")], None).is_ok());
    assert_eq!(queue.spool_stats().map(|s| s.0), Some(2));
    thread::sleep(Duration::from_millis(200));
    // The process ends: what is left stays in the spool.
    assert_eq!(queue.finish(Duration::ZERO), 2);
    drop(queue);

    let stand = stand(Duration::ZERO);
    let (again, _, seen) = queue_with(limits(100), &stand.api, 4, Some(Spool::open(&dir).unwrap()));
    let (recovered, warnings) = again.recover();
    assert_eq!((recovered, warnings.len()), (2, 0));
    wait_for("the spooled changes", || lock(&seen.delivered).len() == 2);
    for (change, waited) in lock(&seen.delivered).iter() {
        assert!(
            *waited >= Duration::from_millis(200),
            "{change} waited {waited:?}"
        );
    }
    assert_eq!(again.spool_stats(), Some((0, 0)));
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".json"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    again.finish(Duration::ZERO);
}
