//! Quantiles from a latency histogram, read the way latency tails are shaped.
//!
//! PromQL's `histogram_quantile` interpolates linearly inside the bucket the rank falls in.
//! Near a P99 that bucket is wide (Istio's and Envoy's default bounds go 250, 500, 1000 ms)
//! and its requests crowd at its lower end, so the linear reading compresses changes: a
//! canary whose every request is 1.5× slower shows a P99 only about 1.16× higher (median
//! 100 ms, log-normal σ 0.5). A judge with a 20 % allowance then cannot see a 50 %
//! regression at all.
//!
//! Here the survival function `S(t)` (the share of requests slower than `t`) is taken as a
//! power law across the bucket, `S(t) = S(lo)·(t/lo)^(−a)`, with `a` set so it meets `S(hi)`;
//! the quantile is where `S` reaches `1 − q`. Tails of latency distributions are close to
//! straight on log–log axes over one bucket, so this reads the example above as 1.54×. In
//! the lowest bucket (which starts at 0) the linear reading is kept.
//!
//! A P99 read from a few dozen requests depends on how many there were, not only on how fast
//! they were: with no request beyond the bucket, the bucket's own tail exponent is unknown
//! (infinite). The canary has far fewer requests than the primary, so [`paired_p99`] lends
//! it the primary's exponent for that bucket: at the null both sides then read alike, and a
//! slower canary's flatter tail is read with the primary's steeper one. Still, a P99 from
//! few requests reads high, so [`merged_pairs`] merges sub-intervals until the canary has
//! enough requests for the bias to stay within a few percent.
//!
//! The P99 alone sees a slower canary through the noise of a few requests in its tail. Where
//! the whole distribution moves, its median shows the same change through far less noise, so
//! each pair carries the sides' medians too ([`body_quantile`]). The body of a latency
//! distribution is close to log-normal, so there the reading is log-probit: the normal
//! quantile of the cumulative share taken as linear in log time across the bucket. That is
//! exact for any log-normal, whatever the bucket bounds, so a canary 1.2× slower reads 1.2×
//! slower even when the bounds are 2.5× apart (the power-law reading gives 1.11×).

use std::collections::BTreeMap;

use super::stats::normal_quantile;
use super::Pair;

/// The `q` quantile of a histogram given as (upper bound, cumulative count) in ascending
/// order of bound, `+Inf` last; None without requests.
pub fn tail_quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    read(q, buckets, None)
}

/// The share of a histogram's requests above `bound`, when the histogram has that bound.
fn survival_at(buckets: &[(f64, f64)], bound: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    let (_, at) = buckets.iter().find(|(b, _)| *b == bound)?;
    (total > 0.0).then(|| (total - at) / total)
}

/// [`tail_quantile`], with `shape` (another histogram of the same bounds) lending its tail
/// exponent where this one has no request beyond the bucket the quantile falls in.
fn read(q: f64, buckets: &[(f64, f64)], shape: Option<&[(f64, f64)]>) -> Option<f64> {
    let total = buckets.last()?.1;
    // Only a positive count reads (NaN included in what does not).
    if total.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) || !(0.0..1.0).contains(&q) {
        return None;
    }
    let rank = q * total;
    let index = buckets.iter().position(|(_, count)| *count >= rank)?;
    let (hi, at_hi) = buckets[index];
    if hi.is_infinite() {
        // As PromQL does: the highest finite bound.
        return Some(index.checked_sub(1).map_or(0.0, |i| buckets[i].0));
    }
    let (lo, at_lo) = match index {
        0 => (0.0, 0.0),
        _ => buckets[index - 1],
    };
    if lo <= 0.0 || at_hi <= at_lo {
        return Some(lo + (hi - lo) * (rank - at_lo) / (at_hi - at_lo).max(f64::MIN_POSITIVE));
    }
    let survival_lo = (total - at_lo) / total;
    let lent = shape
        .filter(|_| total - at_hi < 0.5)
        .and_then(|shape| Some((survival_at(shape, lo)?, survival_at(shape, hi)?)))
        .filter(|(_, beyond)| *beyond > 0.0);
    let (exponent, target) = match lent {
        Some((within, beyond)) => ((within / beyond).ln() / (hi / lo).ln(), 1.0 - q),
        None => {
            // Half a request stands in for an empty tail beyond the bucket, so `a` is finite.
            let survival_hi = (total - at_hi).max(0.5) / total;
            let exponent = (survival_lo / survival_hi).ln() / (hi / lo).ln();
            (exponent, (1.0 - q).max(survival_hi))
        }
    };
    if exponent <= 0.0 {
        return Some(hi);
    }
    Some((lo * (survival_lo / target).powf(1.0 / exponent)).min(hi))
}

/// The `q` quantile of a histogram's body, read log-probit inside its bucket (see the module
/// doc); the lowest bucket and the `+Inf` one read as PromQL reads them. None without
/// requests.
pub fn body_quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    body_read(q, buckets, 0.5 / total)
}

/// [`body_quantile`] with cumulative shares clamped to `[floor, 1 − floor]`, so an edge
/// with no request below or above it has a finite normal score.
fn body_read(q: f64, buckets: &[(f64, f64)], floor: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) || !(0.0..1.0).contains(&q) {
        return None;
    }
    let index = buckets.iter().position(|(_, count)| *count >= q * total)?;
    let (hi, at_hi) = buckets[index];
    if index == 0 || hi.is_infinite() {
        return read(q, buckets, None);
    }
    let (lo, at_lo) = buckets[index - 1];
    let floor = if floor.is_finite() {
        floor.clamp(1e-12, 0.25)
    } else {
        0.25
    };
    let score = |at: f64| normal_quantile((at / total).clamp(floor, 1.0 - floor));
    let (z_lo, z_hi) = (score(at_lo), score(at_hi));
    if lo <= 0.0 || z_hi <= z_lo {
        return read(q, buckets, None);
    }
    let share = ((normal_quantile(q) - z_lo) / (z_hi - z_lo)).clamp(0.0, 1.0);
    Some(lo * (hi / lo).powf(share))
}

/// The medians of one stretch, canary and primary, from their histograms (values in
/// requests per `per` seconds, as for [`paired_p99`]). Where an edge of the median's bucket
/// has no request beyond it, its share is taken as half a request of the side with fewer
/// (the canary), on both sides: a floor set by each side's own count would read the sparser
/// canary further into its tail than the primary, and so slower at equal latency.
pub fn paired_medians(
    canary: &[(f64, f64)],
    primary: &[(f64, f64)],
    per: f64,
) -> Option<(f64, f64)> {
    let (canary, primary) = (counts(canary, per), counts(primary, per));
    let fewer = canary.last()?.1.min(primary.last()?.1);
    let floor = 0.5 / fewer;
    Some((
        body_read(0.5, &canary, floor)?,
        body_read(0.5, &primary, floor)?,
    ))
}

fn counts(buckets: &[(f64, f64)], per: f64) -> Vec<(f64, f64)> {
    buckets
        .iter()
        .map(|(bound, value)| (*bound, value * per))
        .collect()
}

/// The P99s of one sub-interval, canary and primary, from their histograms (values in
/// requests per `per` seconds: `per` turns a `rate()` into a count). Where the canary has no
/// request beyond the bucket its P99 falls in, it borrows the primary's tail shape there.
/// None when either side saw no request.
pub fn paired_p99(canary: &[(f64, f64)], primary: &[(f64, f64)], per: f64) -> Option<(f64, f64)> {
    let (canary, primary) = (counts(canary, per), counts(primary, per));
    Some((
        read(0.99, &canary, Some(&primary))?,
        read(0.99, &primary, None)?,
    ))
}

/// Fewer canary requests than this and a P99 depends on the count as much as on the
/// latency (the canary's reads high by some 8 % at 150 requests, 17 % at 75): consecutive
/// sub-intervals are merged until the canary has this many.
pub const MIN_PAIR_REQUESTS: f64 = 200.0;
/// A median read from the body of the distribution needs far fewer requests than a P99 to
/// be unbiased, so inside a pair's run the medians are read over shorter stretches: each
/// sub-interval, or as few consecutive ones as give the canary this many requests. More,
/// shorter median pairs give the median's test more evidence per minute (each pair adds at
/// most a bounded amount, see [`super::betting`]).
pub const MIN_MEDIAN_REQUESTS: f64 = 50.0;

/// A histogram: (upper bound, cumulative value), ascending, `+Inf` last.
pub type Buckets = Vec<(f64, f64)>;

fn add_into(sum: &mut Buckets, more: &[(f64, f64)]) -> bool {
    if sum.is_empty() {
        sum.extend_from_slice(more);
        return true;
    }
    let same_bounds = sum.len() == more.len() && sum.iter().zip(more).all(|(a, b)| a.0 == b.0);
    if same_bounds {
        for (a, b) in sum.iter_mut().zip(more) {
            a.1 += b.1;
        }
    }
    same_bounds
}

/// Both sides' histograms summed over consecutive sub-intervals.
#[derive(Default)]
struct Run {
    canary: Buckets,
    primary: Buckets,
}

impl Run {
    /// Adds one sub-interval; false when its bounds differ (the run then starts again with it).
    fn add(&mut self, canary: &[(f64, f64)], primary: &[(f64, f64)]) -> bool {
        if add_into(&mut self.canary, canary) && add_into(&mut self.primary, primary) {
            return true;
        }
        (self.canary, self.primary) = (canary.to_vec(), primary.to_vec());
        false
    }

    fn canary_requests(&self, per: f64) -> f64 {
        self.canary.last().map_or(0.0, |(_, total)| total * per)
    }

    fn medians(&self, per: f64) -> Option<(f64, f64)> {
        paired_medians(&self.canary, &self.primary, per)
    }
}

/// The medians inside one P99 run: read over the shortest stretches in which the canary has
/// [`MIN_MEDIAN_REQUESTS`]; a short remainder joins the stretch before it.
#[derive(Default)]
struct MedianRuns {
    done: Vec<Run>,
    open: Run,
}

impl MedianRuns {
    /// The caller starts a new `MedianRuns` when the bounds change, so every stretch here
    /// has the same bounds.
    fn add(&mut self, canary: &[(f64, f64)], primary: &[(f64, f64)], per: f64) {
        self.open.add(canary, primary);
        if self.open.canary_requests(per) >= MIN_MEDIAN_REQUESTS {
            self.done.push(std::mem::take(&mut self.open));
        }
    }

    fn finish(&mut self, per: f64) -> Vec<(f64, f64)> {
        let rest = std::mem::take(&mut self.open);
        match self.done.last_mut() {
            Some(last) if !rest.canary.is_empty() => {
                let same_bounds = last.add(&rest.canary, &rest.primary);
                debug_assert!(same_bounds, "a stretch of other bounds inside one run");
            }
            _ if !rest.canary.is_empty() => self.done.push(rest),
            _ => {}
        }
        std::mem::take(&mut self.done)
            .iter()
            .filter_map(|run| run.medians(per))
            .collect()
    }
}

/// Both sides' histograms over consecutive sub-intervals (by end, Unix ms, values in
/// requests per `per` seconds), merged oldest first into runs in which the canary has at
/// least [`MIN_PAIR_REQUESTS`], each run read as one pair ending at its last sub-interval,
/// with the medians of its shorter stretches. Returns the pairs and the end of the last run,
/// or `start` when none is complete: the sub-intervals after it are read again at the next
/// look, never counted twice.
pub fn merged_pairs(
    ends: impl Iterator<Item = i64>,
    (canary, primary): (&BTreeMap<i64, Buckets>, &BTreeMap<i64, Buckets>),
    per: f64,
    start: i64,
) -> (Vec<Pair>, i64) {
    let (mut pairs, mut through) = (Vec::new(), start);
    let (mut run, mut medians) = (Run::default(), MedianRuns::default());
    for end in ends {
        let (Some(c), Some(p)) = (canary.get(&end), primary.get(&end)) else {
            continue;
        };
        if !run.add(c, p) {
            // The bounds changed (a new histogram layout): the run started again here.
            medians = MedianRuns::default();
        }
        medians.add(c, p, per);
        if run.canary_requests(per) < MIN_PAIR_REQUESTS {
            continue;
        }
        if let Some((canary, primary)) = paired_p99(&run.canary, &run.primary, per) {
            pairs.push(Pair {
                end,
                canary,
                primary,
                medians: medians.finish(per),
            });
        }
        through = end;
        (run, medians) = (Run::default(), MedianRuns::default());
    }
    (pairs, through)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::stats::normal_cdf;

    const BOUNDS: [f64; 6] = [25.0, 50.0, 100.0, 250.0, 500.0, 1000.0];

    /// A log-normal's expected histogram, `n` requests, median `median`, σ 0.5.
    fn histogram(median: f64, n: f64) -> Vec<(f64, f64)> {
        let mut buckets: Vec<(f64, f64)> = BOUNDS
            .iter()
            .map(|b| (*b, n * normal_cdf((b / median).ln() / 0.5)))
            .collect();
        buckets.push((f64::INFINITY, n));
        buckets
    }

    #[test]
    fn a_one_and_a_half_times_slower_tail_reads_close_to_one_and_a_half() {
        let primary = tail_quantile(0.99, &histogram(100.0, 1e6)).unwrap();
        let canary = tail_quantile(0.99, &histogram(150.0, 1e6)).unwrap();
        // The true P99s are 320 and 480 ms.
        assert!((300.0..340.0).contains(&primary), "{primary}");
        let ratio = canary / primary;
        assert!((1.4..1.6).contains(&ratio), "{ratio}");
    }

    #[test]
    fn an_empty_canary_tail_borrows_the_primarys_shape() {
        // 200 requests: none beyond 500 ms, where the primary has its usual 0.06 %.
        let mut canary = histogram(100.0, 200.0);
        let beyond = canary.len() - 3;
        for bucket in &mut canary[beyond..] {
            bucket.1 = 200.0;
        }
        let primary = histogram(100.0, 1e6);
        let (c, p) = paired_p99(&canary, &primary, 1.0).unwrap();
        assert!((c / p - 1.0).abs() < 0.05, "{c} {p}");
        assert_eq!(paired_p99(&canary, &histogram(100.0, 0.0), 1.0), None);
    }

    #[test]
    fn a_body_shift_reads_as_itself_across_wide_buckets() {
        let primary = body_quantile(0.5, &histogram(100.0, 1e6)).unwrap();
        for factor in [1.2, 1.3, 1.5] {
            let canary = body_quantile(0.5, &histogram(100.0 * factor, 1e6)).unwrap();
            let ratio = canary / primary;
            assert!((ratio / factor - 1.0).abs() < 0.01, "{factor}: {ratio}");
        }
        assert_eq!(
            body_quantile(0.5, &[(10.0, 0.0), (f64::INFINITY, 0.0)]),
            None
        );
        assert_eq!(
            body_quantile(0.5, &[(10.0, 4.0), (f64::INFINITY, 4.0)]),
            Some(5.0)
        );
    }

    #[test]
    fn sub_intervals_merge_until_the_canary_has_enough_requests() {
        let every = |n: f64| -> BTreeMap<i64, Buckets> {
            (1..=7).map(|k| (k * 1000, histogram(100.0, n))).collect()
        };
        let (canary, primary) = (every(70.0), every(630.0));
        let ends = (1..=7).map(|k| k * 1000);
        let (pairs, through) = merged_pairs(ends, (&canary, &primary), 1.0, 0);
        assert_eq!(
            pairs.iter().map(|p| p.end).collect::<Vec<_>>(),
            [3000, 6000]
        );
        assert_eq!(through, 6000, "the seventh waits for the next look");
        // 70 canary requests a sub-interval: a median for each of a pair's three.
        assert!(pairs.iter().all(|p| p.medians.len() == 3), "{pairs:?}");
        // 30 a sub-interval: 50 needs two, and the seventh joins the stretch before it.
        let (canary, primary) = (every(30.0), every(270.0));
        let (pairs, _) = merged_pairs((1..=7).map(|k| k * 1000), (&canary, &primary), 1.0, 0);
        let medians: Vec<usize> = pairs.iter().map(|p| p.medians.len()).collect();
        assert_eq!(medians, [3], "{pairs:?}");
    }

    #[test]
    fn medians_read_the_same_from_rates_as_from_counts() {
        // 60 canary requests against 540, as counts (per 1) and as rates over 15 s (per 15).
        let (canary, primary) = (histogram(120.0, 60.0), histogram(100.0, 540.0));
        let rate = |b: &[(f64, f64)]| -> Vec<(f64, f64)> {
            b.iter().map(|(le, n)| (*le, n / 15.0)).collect()
        };
        let from_counts = paired_medians(&canary, &primary, 1.0).unwrap();
        let from_rates = paired_medians(&rate(&canary), &rate(&primary), 15.0).unwrap();
        assert!(
            (from_counts.0 - from_rates.0).abs() < 1e-9
                && (from_counts.1 - from_rates.1).abs() < 1e-9
        );
        // Equal latency reads equal, whatever the counts: the floor is common to both sides.
        let (c, p) =
            paired_medians(&histogram(100.0, 60.0), &histogram(100.0, 5400.0), 1.0).unwrap();
        assert!((c / p - 1.0).abs() < 0.01, "{c} {p}");
    }

    #[test]
    fn edges_answer_like_promql() {
        assert_eq!(
            tail_quantile(0.99, &[(10.0, 0.0), (f64::INFINITY, 0.0)]),
            None
        );
        // Every request beyond the last finite bound: that bound.
        assert_eq!(
            tail_quantile(0.5, &[(10.0, 0.0), (f64::INFINITY, 4.0)]),
            Some(10.0)
        );
        // The lowest bucket is linear from 0.
        assert_eq!(
            tail_quantile(0.5, &[(10.0, 4.0), (f64::INFINITY, 4.0)]),
            Some(5.0)
        );
    }
}
