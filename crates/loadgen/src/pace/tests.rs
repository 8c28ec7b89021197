use std::time::Duration;

use super::*;
use crate::stats::{Histo, Stat};

/// Waits of 0.05–6 ms from 8 tasks at once; every one must end at or after its deadline.
/// The error is logged, not asserted: this machine is shared and may be busy.
async fn errors(timer: Timer) -> (Stat, u64) {
    let h = Arc::new(Histo::default());
    let early = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stop = CancellationToken::new();
    let mut set = tokio::task::JoinSet::new();
    for k in 0..8u64 {
        let (h, early, stop) = (h.clone(), early.clone(), stop.clone());
        set.spawn(async move {
            for i in 0..25u64 {
                let at = now_us() + 50 + (k * 131 + i * 977) % 6000;
                assert!(sleep_until_unix(at, timer, &stop).await);
                let now = now_us();
                if now < at {
                    early.fetch_add(1, Relaxed);
                } else {
                    h.record(now - at);
                }
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
    (Stat::of(&h.snapshot()), early.load(Relaxed))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_never_end_early_with_any_timer() {
    for timer in [Timer::Precise, Timer::Spin, Timer::Tokio] {
        let (s, early) = errors(timer).await;
        eprintln!("timer {timer:?}: error µs {s:?}");
        assert_eq!(early, 0, "timer {timer:?} woke early");
        assert_eq!(s.count, 200);
        // Generous: a wait must end, even on a loaded machine.
        assert!(s.max < 5_000_000, "timer {timer:?}: {s:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_ends_a_long_wait_and_past_deadlines_do_not_wait() {
    let stop = CancellationToken::new();
    let s = stop.clone();
    let started = Instant::now();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        s.cancel();
    });
    assert!(!sleep_until_unix(now_us() + 60_000_000, Timer::Precise, &stop).await);
    assert!(started.elapsed() < Duration::from_secs(30));
    // A deadline in the past returns at once, false only when stopped.
    assert!(!sleep_until_unix(1, Timer::Precise, &stop).await);
    assert!(sleep_until_unix(1, Timer::Precise, &CancellationToken::new()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_waits_do_not_hold_up_later_ones() {
    let p = pacer();
    // Register waits, then drop them before they fire (as a stopped `select!` does).
    for _ in 0..50 {
        let sleep = p.sleep_until(Instant::now() + Duration::from_millis(2));
        let _ = tokio::time::timeout(Duration::from_micros(10), sleep).await;
    }
    let deadline = Instant::now() + Duration::from_millis(1);
    p.sleep_until(deadline).await;
    assert!(Instant::now() + LEAD >= deadline);
}

#[test]
fn heap_order_is_deadline_then_registration() {
    let now = Instant::now();
    let e = |ms: u64, seq: u64| Entry {
        at: now + Duration::from_millis(ms),
        seq,
        slot: Arc::default(),
    };
    let mut heap: BinaryHeap<Entry> = [e(3, 1), e(1, 2), e(1, 3), e(2, 4)].into_iter().collect();
    let order: Vec<u64> = std::iter::from_fn(|| heap.pop().map(|e| e.seq)).collect();
    assert_eq!(order, vec![2, 3, 4, 1]);
}
