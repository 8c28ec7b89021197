//! The per-connection message rate limit (`--rate-limit`, `--rate-limit-burst`): a token
//! bucket refilled continuously; a message over it is answered `rate_limited`.

use std::time::{Duration, Instant};

/// Per-connection message rate limit: `rate` per second sustained, `burst` at once.
pub(super) struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub(super) fn new(rate: u32, burst: u32) -> TokenBucket {
        let burst = f64::from(burst.max(rate).max(1));
        TokenBucket {
            rate: f64::from(rate),
            burst,
            tokens: burst,
            last: Instant::now(),
        }
    }

    pub(super) fn take(&mut self) -> bool {
        if self.rate == 0.0 {
            return true;
        }
        let now = Instant::now();
        let elapsed = now.duration_since(self.last).min(Duration::from_secs(3600));
        self.last = now;
        self.tokens = (self.tokens + elapsed.as_secs_f64() * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill_at_the_rate() {
        let mut b = TokenBucket::new(10, 3);
        assert!((0..10).all(|_| b.take()), "burst is at least the rate");
        assert!(!b.take(), "empty after the burst");
        b.last -= Duration::from_millis(250);
        assert!(b.take() && b.take(), "2.5 tokens after 250 ms at 10/s");
        assert!(!b.take());
    }

    #[test]
    fn rate_zero_is_no_limit() {
        let mut b = TokenBucket::new(0, 0);
        assert!((0..10_000).all(|_| b.take()));
    }
}
