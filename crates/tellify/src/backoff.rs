//! The one exponential backoff every retry loop of the server uses: delivery retries
//! (`notify`), poll attempts (`pollers`), broker reconnects and redeliveries (`sources`)
//! and syslog reconnects (`export`).
//!
//! [`Backoff`] is the policy: the wait after the `n`-th failure in a row is
//! `initial * 2^(n-1)`, never more than `cap`. With jitter the wait is between half and all
//! of that step, so many retries that failed together do not come back in step; without it
//! the wait is the whole step, for a single connection with no herd to spread out. Waits
//! are whole milliseconds, at least one. [`Streak`] is the stateful form for a loop that
//! counts its own failures: [`Streak::next_delay`] after each failure, [`Streak::reset`]
//! after a success.

use std::time::Duration;

use rand::Rng;

/// Doubling waits from `initial`, capped at `cap`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    initial: Duration,
    cap: Duration,
}

/// Past this many doublings the step is the cap anyway (and `2^n` stays exact).
const MAX_DOUBLINGS: u32 = 30;

impl Backoff {
    /// Every wait is at most `cap`, the first one too.
    pub fn new(initial: Duration, cap: Duration) -> Backoff {
        Backoff { initial, cap }
    }

    /// Doubling without a cap of its own, for a loop bounded otherwise (a poll's attempts
    /// end with its interval).
    pub fn uncapped(initial: Duration) -> Backoff {
        Backoff::new(initial, Duration::MAX)
    }

    /// The wait after `failures` failures in a row (0 counts as 1): between half
    /// (`jitter` 0) and all (`jitter` 1) of `initial * 2^(failures-1)` capped at `cap`;
    /// `jitter` outside `0..=1` is clamped.
    pub fn delay(&self, failures: u32, jitter: f64) -> Duration {
        let doublings = failures.saturating_sub(1).min(MAX_DOUBLINGS);
        let step_ms = self.initial.as_millis() as f64 * f64::from(1u32 << doublings);
        let capped_ms = step_ms.min(self.cap.as_millis() as f64);
        let jittered_ms = capped_ms * (0.5 + 0.5 * jitter.clamp(0.0, 1.0));
        // `as` saturates, so a cap of `Duration::MAX` cannot overflow here.
        Duration::from_millis(jittered_ms.max(1.0) as u64)
    }

    /// [`Backoff::delay`] with a random jitter.
    pub fn jittered(&self, failures: u32) -> Duration {
        self.delay(failures, rand::rng().random::<f64>())
    }
}

/// Whether a [`Streak`] spreads its waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Jitter {
    /// The whole step every time: one connection, no herd.
    None,
    /// Between half and all of the step, at random.
    Random,
}

/// Failures in a row of one loop, and the wait they call for.
#[derive(Clone, Debug)]
pub struct Streak {
    backoff: Backoff,
    jitter: Jitter,
    failures: u32,
}

impl Streak {
    pub fn new(backoff: Backoff, jitter: Jitter) -> Streak {
        Streak {
            backoff,
            jitter,
            failures: 0,
        }
    }

    /// Counts one more failure and returns the wait before the next try.
    pub fn next_delay(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        match self.jitter {
            Jitter::None => self.backoff.delay(self.failures, 1.0),
            Jitter::Random => self.backoff.jittered(self.failures),
        }
    }

    /// The step of the last failure, without jitter; zero after a success.
    pub fn current_step(&self) -> Duration {
        if self.failures == 0 {
            return Duration::ZERO;
        }
        self.backoff.delay(self.failures, 1.0)
    }

    /// A success: the next failure waits `initial` again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    #[test]
    fn each_failure_doubles_the_step() {
        let backoff = Backoff::new(ms(100), Duration::from_secs(60));
        let steps: Vec<Duration> = (1..=5).map(|n| backoff.delay(n, 1.0)).collect();
        assert_eq!(steps, vec![ms(100), ms(200), ms(400), ms(800), ms(1600)]);
        assert_eq!(
            backoff.delay(0, 1.0),
            ms(100),
            "no failure counts as the first"
        );
    }

    #[test]
    fn the_step_stops_at_the_cap_and_never_overflows() {
        let backoff = Backoff::new(ms(100), ms(350));
        assert_eq!(backoff.delay(3, 1.0), ms(350));
        assert_eq!(backoff.delay(u32::MAX, 1.0), ms(350));
        let uncapped = Backoff::uncapped(ms(250));
        assert_eq!(uncapped.delay(3, 1.0), ms(1000));
        assert!(uncapped.delay(u32::MAX, 1.0) >= ms(250 << 30));
        assert_eq!(
            Backoff::new(ms(500), ms(10)).delay(1, 1.0),
            ms(10),
            "the cap holds for the first wait too"
        );
    }

    #[test]
    fn jitter_keeps_the_wait_between_half_and_all_of_the_step() {
        let backoff = Backoff::new(ms(1000), Duration::from_secs(60));
        assert_eq!(backoff.delay(3, 0.0), ms(2000));
        assert_eq!(backoff.delay(3, 0.5), ms(3000));
        assert_eq!(backoff.delay(3, 1.0), ms(4000));
        assert_eq!(backoff.delay(3, -7.0), ms(2000), "jitter is clamped");
        assert_eq!(backoff.delay(3, 7.0), ms(4000), "jitter is clamped");
        for _ in 0..200 {
            let wait = backoff.jittered(3);
            assert!(wait >= ms(2000) && wait <= ms(4000), "{wait:?}");
        }
        assert_eq!(
            Backoff::new(Duration::ZERO, ms(10)).delay(1, 0.0),
            ms(1),
            "at least a millisecond"
        );
    }

    #[test]
    fn a_streak_grows_until_reset() {
        let mut streak = Streak::new(Backoff::new(ms(100), ms(350)), Jitter::None);
        assert_eq!(streak.current_step(), Duration::ZERO);
        let delays: Vec<Duration> = (0..4).map(|_| streak.next_delay()).collect();
        assert_eq!(delays, vec![ms(100), ms(200), ms(350), ms(350)]);
        assert_eq!(streak.current_step(), ms(350));
        streak.reset();
        assert_eq!(streak.current_step(), Duration::ZERO);
        assert_eq!(streak.next_delay(), ms(100));
    }

    #[test]
    fn a_jittered_streak_stays_within_each_step() {
        let mut streak = Streak::new(Backoff::new(ms(400), ms(1600)), Jitter::Random);
        for step in [400, 800, 1600, 1600] {
            let wait = streak.next_delay();
            assert!(
                wait >= ms(step / 2) && wait <= ms(step),
                "{wait:?} for step {step}"
            );
            assert_eq!(streak.current_step(), ms(step));
        }
    }
}
