//! Which stretches of time a comparative metric is sampled over: one model, used by the
//! controller's queries and by `aviary bench judge`, so the bench measures what a rollout does.
//!
//! Sub-intervals tile time on a fixed grid (their ends are multiples of their length since the
//! Unix epoch) and never overlap, so a sample is never counted twice, across steps and across
//! controller restarts: the status keeps the end of the last sub-interval counted.
//!
//! Each sample is `rate()` over its sub-interval plus one scrape interval. The extra scrape
//! makes consecutive windows share their boundary scrape: `rate()` needs two scrapes inside
//! its window, and the increase between the last scrape before one boundary and the last
//! scrape before the next covers each request exactly once (Grafana's `$__rate_interval`
//! rests on the same arithmetic). A window of just the sub-interval would drop the requests
//! between the scrapes on either side of each boundary: half of them at two scrapes a window.

use std::time::Duration;

/// At most this many samples per analysis interval: enough to average out noise, few enough
/// that a query stays small.
pub const MAX_PER_INTERVAL: u32 = 30;
/// At most this many sub-intervals are sampled in one look; older unsampled ones are skipped
/// (skipping never counts anything twice).
pub const MAX_PER_LOOK: u64 = 120;
/// The scrape interval assumed when none is configured: what meshes' Prometheus installs use.
pub const DEFAULT_SCRAPE_INTERVAL: Duration = Duration::from_secs(15);

/// How the metrics are collected: the Prometheus scrape interval of the proxies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SamplingModel {
    pub scrape_interval: Duration,
}

/// The sub-intervals one look samples: their ends are `first_end`, `first_end + step`, …,
/// `last_end`, in Unix milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Looks {
    pub first_end: i64,
    pub last_end: i64,
    pub step: i64,
}

impl Looks {
    /// How many sub-intervals this look covers.
    pub fn count(&self) -> u64 {
        ((self.last_end - self.first_end) / self.step + 1) as u64
    }

    /// The first and last end in Unix seconds, as a range query takes them.
    pub fn range_seconds(&self) -> (f64, f64) {
        (
            self.first_end as f64 / 1000.0,
            self.last_end as f64 / 1000.0,
        )
    }

    /// The sub-interval.
    pub fn step_duration(&self) -> Duration {
        Duration::from_millis(self.step.unsigned_abs())
    }

    /// The end of every sub-interval, oldest first.
    pub fn ends(&self) -> impl Iterator<Item = i64> + '_ {
        (0..self.count() as i64).map(|k| self.first_end + k * self.step)
    }
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

impl Default for SamplingModel {
    fn default() -> Self {
        SamplingModel {
            scrape_interval: DEFAULT_SCRAPE_INTERVAL,
        }
    }
}

impl SamplingModel {
    /// The sub-interval for an analysis interval: the interval split into equal parts, at most
    /// [`MAX_PER_INTERVAL`], none shorter than one scrape interval (its window then holds two).
    pub fn sub_interval(&self, analysis_interval: Duration) -> Duration {
        let scrape = self.scrape_interval.max(Duration::from_millis(100));
        let parts = (analysis_interval.as_millis() / scrape.as_millis())
            .clamp(1, u128::from(MAX_PER_INTERVAL)) as u32;
        (analysis_interval / parts).max(scrape)
    }

    /// The range of each sample's `rate()`: the sub-interval and one scrape more.
    pub fn query_window(&self, sub_interval: Duration) -> Duration {
        sub_interval + self.scrape_interval
    }

    /// The sub-intervals not yet sampled at `now` (Unix ms). `sampled_until` is the end of the
    /// last one counted; before the first look, sampling reaches back `lookback` (one
    /// analysis interval: the canary has had traffic that long). The newest sub-interval
    /// ends a scrape before `now`, so its boundary scrape has happened.
    pub fn pending(
        &self,
        sub_interval: Duration,
        sampled_until: Option<i64>,
        now: i64,
        lookback: Duration,
    ) -> Option<Looks> {
        let step = millis(sub_interval).max(1);
        // A mark beyond now (a clock step, an edited status) waits no longer than now.
        let from = sampled_until
            .unwrap_or(now.saturating_sub(millis(lookback)))
            .min(now);
        // The first end whose sub-interval starts at or after `from`.
        let first = from.saturating_add(2 * step - 1).div_euclid(step) * step;
        let last = now
            .saturating_sub(millis(self.scrape_interval))
            .div_euclid(step)
            * step;
        if last < first {
            return None;
        }
        let newest_first = last - (MAX_PER_LOOK as i64 - 1) * step;
        Some(Looks {
            first_end: first.max(newest_first),
            last_end: last,
            step,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1000;

    fn model(scrape: u64) -> SamplingModel {
        SamplingModel {
            scrape_interval: Duration::from_secs(scrape),
        }
    }

    #[test]
    fn sub_intervals_are_at_least_a_scrape_and_at_most_thirty_an_interval() {
        let m = model(15);
        assert_eq!(
            m.sub_interval(Duration::from_secs(60)),
            Duration::from_secs(15)
        );
        assert_eq!(
            m.sub_interval(Duration::from_secs(300)),
            Duration::from_secs(15)
        );
        assert_eq!(
            m.sub_interval(Duration::from_secs(900)),
            Duration::from_secs(30)
        );
        assert_eq!(
            m.sub_interval(Duration::from_secs(10)),
            Duration::from_secs(15)
        );
        assert_eq!(
            m.query_window(Duration::from_secs(15)),
            Duration::from_secs(30)
        );
        assert_eq!(
            model(1).sub_interval(Duration::from_secs(2)),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn consecutive_looks_tile_time_without_overlap() {
        let m = model(15);
        let sub = Duration::from_secs(15);
        let first = m
            .pending(sub, None, 60 * S, Duration::from_secs(60))
            .unwrap();
        assert_eq!((first.first_end, first.last_end), (15 * S, 45 * S));
        let second = m.pending(sub, Some(45 * S), 121 * S, sub).unwrap();
        assert_eq!((second.first_end, second.last_end), (60 * S, 105 * S));
        assert_eq!(
            second.ends().collect::<Vec<_>>(),
            [60 * S, 75 * S, 90 * S, 105 * S]
        );
        // Nothing new yet: the same look again samples nothing.
        assert_eq!(m.pending(sub, Some(105 * S), 121 * S, sub), None);
    }

    #[test]
    fn a_changed_grid_starts_after_what_was_counted() {
        let m = model(15);
        // Counted up to 50 s on a 25 s grid; now on a 30 s grid the first window is (60, 90].
        let looks = m.pending(
            Duration::from_secs(30),
            Some(50 * S),
            200 * S,
            Duration::ZERO,
        );
        let looks = looks.unwrap();
        assert!(looks.first_end - looks.step >= 50 * S, "{looks:?}");
        assert_eq!(looks.first_end, 90 * S);
    }

    #[test]
    fn a_long_gap_samples_only_the_newest_sub_intervals() {
        let m = model(1);
        let looks = m.pending(Duration::from_secs(1), Some(0), 10_000 * S, Duration::ZERO);
        assert_eq!(looks.unwrap().count(), MAX_PER_LOOK);
    }
}
