//! Exponential backoff with full jitter: a uniform delay in [0, min(cap, base · 2^attempt)].

use std::time::Duration;

use rand::Rng;

#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Backoff {
    /// The ceiling for the delay after `attempts` failures (0 = the first failure).
    pub fn ceiling(&self, attempts: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempts.min(30));
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// A delay drawn by `rng` up to the ceiling.
    pub fn delay(&self, attempts: u32, rng: &mut impl Rng) -> Duration {
        let ceiling = self.ceiling(attempts);
        let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rng.gen_range(0..=millis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ceiling_doubles_up_to_the_cap() {
        let b = Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_millis(1000),
        };
        assert_eq!(b.ceiling(0), Duration::from_millis(100));
        assert_eq!(b.ceiling(1), Duration::from_millis(200));
        assert_eq!(b.ceiling(3), Duration::from_millis(800));
        assert_eq!(b.ceiling(4), Duration::from_millis(1000));
        assert_eq!(b.ceiling(u32::MAX), Duration::from_millis(1000));
    }

    #[test]
    fn delays_are_jittered_within_the_ceiling() {
        let b = Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(60),
        };
        let rng = &mut rand::thread_rng();
        let delays: Vec<Duration> = (0..200).map(|_| b.delay(2, rng)).collect();
        assert!(delays.iter().all(|d| *d <= Duration::from_millis(400)));
        let distinct: std::collections::HashSet<_> = delays.iter().collect();
        assert!(
            distinct.len() > 50,
            "full jitter spreads the retries: {}",
            distinct.len()
        );
    }
}
