//! Which upstream a call tries first (docs/protocol.md §4b): `round_robin` rotates across the
//! upstreams; `least_inflight` prefers the one with the fewest calls in flight, ties taken
//! in rotation. The balancer gives an order of preference; the caller takes the first
//! upstream whose circuit admits the call, so open circuits are skipped.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::config::Balance;

pub struct Balancer {
    policy: Balance,
    /// Where the next rotation starts.
    next: AtomicUsize,
}

impl Balancer {
    pub fn new(policy: Balance) -> Balancer {
        Balancer {
            policy,
            next: AtomicUsize::new(0),
        }
    }

    /// Indices of `inflight.len()` upstreams in order of preference for one attempt;
    /// `inflight[i]` is how many calls upstream `i` has in flight.
    pub fn order(&self, inflight: &[usize]) -> Vec<usize> {
        let n = inflight.len();
        if n == 0 {
            return Vec::new();
        }
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        let mut order: Vec<usize> = (0..n).collect();
        if self.policy == Balance::RoundRobin {
            order.rotate_left(turn % n);
            return order;
        }
        // Fewest in flight first; each run of equal counts rotates on its own, so ties are
        // shared evenly whatever the busy upstreams around them.
        order.sort_by_key(|&i| inflight[i]);
        let mut start = 0;
        while start < n {
            let count = inflight[order[start]];
            let len = order[start..]
                .iter()
                .take_while(|&&i| inflight[i] == count)
                .count();
            order[start..start + len].rotate_left(turn % len);
            start += len;
        }
        order
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_rotates_whatever_is_in_flight() {
        let b = Balancer::new(Balance::RoundRobin);
        let firsts: Vec<usize> = (0..6).map(|_| b.order(&[0, 9, 0])[0]).collect();
        assert_eq!(firsts, [0, 1, 2, 0, 1, 2]);
        assert_eq!(b.order(&[0, 0, 0]), [0, 1, 2]);
        assert_eq!(
            b.order(&[0, 0, 0]),
            [1, 2, 0],
            "the rest follow in rotation"
        );
    }

    #[test]
    fn least_inflight_prefers_the_idlest_and_rotates_ties() {
        let b = Balancer::new(Balance::LeastInflight);
        assert_eq!(b.order(&[3, 1, 2]), [1, 2, 0]);
        assert_eq!(b.order(&[3, 1, 2])[0], 1);
        // Ties rotate evenly, whatever sits between them.
        let firsts: Vec<usize> = (0..6).map(|_| b.order(&[0, 5, 0])[0]).collect();
        assert_eq!(firsts.iter().filter(|&&i| i == 0).count(), 3, "{firsts:?}");
        assert_eq!(firsts.iter().filter(|&&i| i == 2).count(), 3, "{firsts:?}");
        assert_eq!(b.order(&[1, 0, 1, 0]).len(), 4);
        assert!(b.order(&[]).is_empty());
        assert_eq!(b.order(&[7]), [0]);
    }
}
