//! The restart-intensity window: at most `max_restarts` restarts within `period`, as in OTP.
//! Pure: the caller passes `now`.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// Restart intensity: at most `max_restarts` within `period`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Intensity {
    /// Restarts allowed within `period`.
    pub max_restarts: usize,
    /// The sliding window.
    pub period: Duration,
}

impl Default for Intensity {
    /// At most 5 restarts in 30 s.
    fn default() -> Self {
        Intensity {
            max_restarts: 5,
            period: Duration::from_secs(30),
        }
    }
}

/// The restarts (and failed restart attempts) of one supervisor within its window.
#[derive(Clone, Debug)]
pub struct RestartWindow {
    intensity: Intensity,
    at: VecDeque<Instant>,
}

/// More restarts than the intensity allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exceeded;

impl RestartWindow {
    /// An empty window.
    pub fn new(intensity: Intensity) -> RestartWindow {
        RestartWindow {
            intensity,
            at: VecDeque::new(),
        }
    }

    /// Records one restart at `now`. Returns how many restarts the window holds now
    /// (1 for the first one), or [`Exceeded`] when that is more than allowed.
    pub fn record(&mut self, now: Instant) -> Result<usize, Exceeded> {
        self.expire(now);
        self.at.push_back(now);
        if self.at.len() > self.intensity.max_restarts {
            Err(Exceeded)
        } else {
            Ok(self.at.len())
        }
    }

    /// Restarts still inside the window at `now`.
    pub fn count(&mut self, now: Instant) -> usize {
        self.expire(now);
        self.at.len()
    }

    fn expire(&mut self, now: Instant) {
        while self
            .at
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > self.intensity.period)
        {
            self.at.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn window(max: usize, period_s: u64) -> RestartWindow {
        RestartWindow::new(Intensity {
            max_restarts: max,
            period: S * u32::try_from(period_s).unwrap(),
        })
    }

    #[test]
    fn allows_max_restarts_then_exceeds() {
        let t0 = Instant::now();
        let mut w = window(3, 10);
        assert_eq!(w.record(t0), Ok(1));
        assert_eq!(w.record(t0 + S), Ok(2));
        assert_eq!(w.record(t0 + 2 * S), Ok(3));
        assert_eq!(w.record(t0 + 3 * S), Err(Exceeded));
    }

    #[test]
    fn restarts_older_than_the_period_leave_the_window() {
        let t0 = Instant::now();
        let mut w = window(2, 10);
        assert_eq!(w.record(t0), Ok(1));
        assert_eq!(w.record(t0 + 5 * S), Ok(2));
        // t0 is 11 s old at t0+11: it has left; t0+5 has not.
        assert_eq!(w.record(t0 + 11 * S), Ok(2));
        assert_eq!(w.count(t0 + 16 * S), 1);
        assert_eq!(w.count(t0 + 30 * S), 0);
    }

    #[test]
    fn a_restart_exactly_one_period_old_still_counts() {
        let t0 = Instant::now();
        let mut w = window(1, 10);
        assert_eq!(w.record(t0), Ok(1));
        assert_eq!(w.record(t0 + 10 * S), Err(Exceeded));
    }

    #[test]
    fn zero_intensity_gives_up_at_the_first_restart() {
        let mut w = window(0, 10);
        assert_eq!(w.record(Instant::now()), Err(Exceeded));
    }
}
