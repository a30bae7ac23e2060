//! Transfer rates and token buckets, with time passed in.

use std::time::{Duration, Instant};

/// Bytes per second over a sliding window of whole seconds.
#[derive(Clone, Debug)]
pub struct Rate {
    /// Bytes in each of the last `WINDOW` seconds, newest at `head`.
    slots: [u64; Rate::WINDOW],
    head: usize,
    /// Start of the current slot.
    slot_start: Option<Instant>,
    pub total: u64,
}

impl Default for Rate {
    fn default() -> Self {
        Rate {
            slots: [0; Rate::WINDOW],
            head: 0,
            slot_start: None,
            total: 0,
        }
    }
}

impl Rate {
    const WINDOW: usize = 5;

    fn advance(&mut self, now: Instant) {
        let start = *self.slot_start.get_or_insert(now);
        let elapsed = now.saturating_duration_since(start).as_secs();
        if elapsed == 0 {
            return;
        }
        for _ in 0..elapsed.min(Rate::WINDOW as u64) {
            self.head = (self.head + 1) % Rate::WINDOW;
            self.slots[self.head] = 0;
        }
        self.slot_start = Some(start + Duration::from_secs(elapsed));
    }

    pub fn add(&mut self, bytes: u64, now: Instant) {
        self.advance(now);
        self.slots[self.head] += bytes;
        self.total += bytes;
    }

    /// Bytes were counted within the window that ends at `now`.
    pub fn moved_recently(&self, now: Instant) -> bool {
        let Some(start) = self.slot_start else {
            return false;
        };
        let elapsed = now.saturating_duration_since(start).as_secs() as usize;
        // The newest `WINDOW - elapsed` slots are still inside the window.
        (0..Rate::WINDOW.saturating_sub(elapsed))
            .any(|back| self.slots[(self.head + Rate::WINDOW - back) % Rate::WINDOW] > 0)
    }

    /// Average over the completed seconds of the window (the current partial
    /// second counts in proportion).
    pub fn per_second(&mut self, now: Instant) -> u64 {
        self.advance(now);
        let Some(start) = self.slot_start else {
            return 0;
        };
        let partial = now.saturating_duration_since(start).as_secs_f64().min(1.0);
        let sum: u64 = self.slots.iter().sum();
        let span = (Rate::WINDOW - 1) as f64 + partial;
        if span <= 0.0 {
            return 0;
        }
        (sum as f64 / span) as u64
    }
}

/// A token bucket: `rate` bytes per second with a burst of one second.
/// A rate of 0 means unlimited.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate: u64,
    tokens: f64,
    last: Option<Instant>,
}

impl TokenBucket {
    pub fn new(rate: u64) -> TokenBucket {
        TokenBucket {
            rate,
            tokens: rate as f64,
            last: None,
        }
    }

    pub fn unlimited(&self) -> bool {
        self.rate == 0
    }

    /// Bytes per second (0: unlimited).
    pub fn rate(&self) -> u64 {
        self.rate
    }

    pub fn set_rate(&mut self, rate: u64) {
        if rate != self.rate && self.rate == 0 {
            // From unlimited: start with a full second of burst.
            self.tokens = rate as f64;
        }
        self.rate = rate;
        self.tokens = self.tokens.min(rate as f64);
    }

    fn refill(&mut self, now: Instant) {
        if let Some(last) = self.last {
            let dt = now.saturating_duration_since(last).as_secs_f64();
            self.tokens = (self.tokens + dt * self.rate as f64).min(self.rate as f64);
        }
        self.last = Some(now);
    }

    /// Bytes that may be moved now (`u64::MAX` when unlimited).
    pub fn available(&mut self, now: Instant) -> u64 {
        if self.unlimited() {
            return u64::MAX;
        }
        self.refill(now);
        self.tokens.max(0.0) as u64
    }

    /// Takes `bytes` (may go into debt, which the next refills repay).
    pub fn take(&mut self, bytes: u64, now: Instant) {
        if self.unlimited() {
            return;
        }
        self.refill(now);
        // At most one second of debt: a burst read past the limit delays
        // the next reads by at most a second.
        self.tokens = (self.tokens - bytes as f64).max(-(self.rate as f64));
    }

    /// When at least `bytes` will be available.
    pub fn ready_at(&mut self, bytes: u64, now: Instant) -> Instant {
        if self.unlimited() {
            return now;
        }
        self.refill(now);
        let missing = bytes as f64 - self.tokens;
        if missing <= 0.0 {
            now
        } else {
            now + Duration::from_secs_f64(missing / self.rate as f64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_window() {
        let t0 = Instant::now();
        let mut r = Rate::default();
        for s in 0..10 {
            r.add(1000, t0 + Duration::from_secs(s));
        }
        let rate = r.per_second(t0 + Duration::from_millis(9999));
        assert!((900..=1100).contains(&rate), "{rate}");
        assert_eq!(r.per_second(t0 + Duration::from_secs(30)), 0);
        assert_eq!(r.total, 10_000);
    }

    #[test]
    fn moved_recently_within_the_window() {
        let t0 = Instant::now();
        let mut r = Rate::default();
        assert!(!r.moved_recently(t0));
        r.add(0, t0);
        assert!(!r.moved_recently(t0));
        r.add(10, t0 + Duration::from_millis(1500));
        assert!(r.moved_recently(t0 + Duration::from_millis(1500)));
        assert!(r.moved_recently(t0 + Duration::from_millis(5999)));
        assert!(!r.moved_recently(t0 + Duration::from_secs(6)));
        // What per_second sees agrees.
        assert_eq!(r.clone().per_second(t0 + Duration::from_secs(6)), 0);
        assert!(r.per_second(t0 + Duration::from_millis(5999)) > 0);
    }

    #[test]
    fn bucket() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1000);
        assert_eq!(b.available(t0), 1000);
        b.take(1500, t0);
        assert_eq!(b.available(t0), 0);
        assert_eq!(b.ready_at(500, t0), t0 + Duration::from_secs(1));
        assert_eq!(b.available(t0 + Duration::from_secs(1)), 500);
        assert_eq!(TokenBucket::new(0).available(t0), u64::MAX);
    }
}
