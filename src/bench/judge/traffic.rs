//! Simulated proxy telemetry as Prometheus holds it: per-second traffic into a latency
//! histogram (Istio's default buckets) and request and error counters, scraped every few
//! seconds at an offset of each side's own, then read back the way PromQL's `rate()`,
//! `increase()` and `histogram_quantile()` read it.

use rand::rngs::StdRng;
use rand::Rng;

use crate::judge::stats::normal_cdf;

/// `istio_request_duration_milliseconds` default bucket bounds; `+Inf` follows.
const BUCKETS_MS: [f64; 13] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
];
const SLOTS: usize = BUCKETS_MS.len() + 1;
/// Request times are log-normal: median 100 ms, σ 0.5 (P99 ≈ 320 ms).
pub const MEDIAN_MS: f64 = 100.0;
pub const SIGMA: f64 = 0.5;
/// The noise factor holds for this many seconds, then is drawn again.
pub const NOISE_SECONDS: u32 = 5;

/// How one side answers.
#[derive(Debug, Clone, Copy)]
pub struct Side {
    pub rps: f64,
    pub error_rate: f64,
    /// Multiplies every request's time.
    pub latency: f64,
    /// A share of requests (first) made slower by a factor (second): a tail-only regression.
    pub tail: (f64, f64),
    /// σ of the log of a per-5-second factor on this side's times.
    pub noise: f64,
}

/// Something that hits both sides at once: times multiplied and errors added, for a while.
#[derive(Debug, Clone, Copy)]
pub struct Incident {
    pub from: u32,
    pub until: u32,
    pub latency: f64,
    pub errors: f64,
}

/// One side's counters at each scrape.
pub struct Scraped {
    pub times: Vec<f64>,
    requests: Vec<f64>,
    errors: Vec<f64>,
    buckets: Vec<[f64; SLOTS]>,
}

pub fn standard_normal(rng: &mut StdRng) -> f64 {
    // Box–Muller.
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

fn poisson(rng: &mut StdRng, mean: f64) -> u64 {
    if mean > 50.0 {
        return (mean + mean.sqrt() * standard_normal(rng)).round().max(0.0) as u64;
    }
    // Knuth's method for small means.
    let limit = (-mean).exp();
    let (mut count, mut product) = (0, rng.random::<f64>());
    while product > limit {
        count += 1;
        product *= rng.random::<f64>();
    }
    count
}

/// The chance that a request of `side`, its times multiplied by `factor`, takes at most `ms`.
pub fn time_cdf(side: &Side, factor: f64, ms: f64) -> f64 {
    let at = |scale: f64| normal_cdf((ms / (MEDIAN_MS * scale)).ln() / SIGMA);
    let (share, slower) = side.tail;
    let scale = side.latency * factor;
    (1.0 - share) * at(scale) + share * at(scale * slower)
}

/// The cumulative bucket shares for one noise factor.
fn bucket_cdf(side: &Side, factor: f64) -> [f64; SLOTS] {
    let mut cdf = [1.0; SLOTS];
    for (slot, bound) in cdf.iter_mut().zip(BUCKETS_MS) {
        *slot = time_cdf(side, factor, bound);
    }
    cdf
}

/// `seconds` of traffic, scraped every `scrape` seconds starting at `offset`.
pub fn simulate(
    rng: &mut StdRng,
    side: &Side,
    (seconds, scrape, offset): (u32, u32, u32),
    incident: Option<Incident>,
) -> Scraped {
    let mut out = Scraped {
        times: Vec::new(),
        requests: Vec::new(),
        errors: Vec::new(),
        buckets: Vec::new(),
    };
    let (mut requests, mut errors, mut buckets) = (0.0, 0.0, [0.0; SLOTS]);
    let (mut cdf, mut error_rate) = ([1.0; SLOTS], side.error_rate);
    for second in 0..seconds {
        if second % NOISE_SECONDS == 0
            || incident.is_some_and(|i| second == i.from || second == i.until)
        {
            let hit = incident.filter(|i| (i.from..i.until).contains(&second));
            let shared = hit.map_or(1.0, |i| i.latency);
            cdf = bucket_cdf(side, shared * (side.noise * standard_normal(rng)).exp());
            error_rate = (side.error_rate + hit.map_or(0.0, |i| i.errors)).min(1.0);
        }
        for _ in 0..poisson(rng, side.rps) {
            let u: f64 = rng.random();
            let slot = cdf.iter().position(|c| u < *c).unwrap_or(SLOTS - 1);
            for bucket in &mut buckets[slot..] {
                *bucket += 1.0;
            }
            requests += 1.0;
            errors += f64::from(u8::from(rng.random::<f64>() < error_rate));
        }
        let now = second + 1;
        if now % scrape == offset % scrape {
            out.times.push(f64::from(now));
            out.requests.push(requests);
            out.errors.push(errors);
            out.buckets.push(buckets);
        }
    }
    out
}

impl Scraped {
    /// The scrapes in the range selector `(end − width, end]`.
    fn window(&self, end: f64, width: f64) -> std::ops::Range<usize> {
        let first = self.times.partition_point(|t| *t <= end - width);
        let last = self.times.partition_point(|t| *t <= end);
        first..last
    }

    /// Each bucket's increase between the first and last scrape in `(end − width, end]`:
    /// None without two scrapes there.
    fn increase(&self, end: f64, width: f64) -> Option<[f64; SLOTS]> {
        let window = self.window(end, width);
        if window.len() < 2 {
            return None;
        }
        let (first, last) = (&self.buckets[window.start], &self.buckets[window.end - 1]);
        Some(std::array::from_fn(|slot| last[slot] - first[slot]))
    }

    /// `histogram_quantile(q, sum(rate(bucket[width])) by (le))` at `end`: None without two
    /// scrapes in the window or without requests between them.
    pub fn quantile(&self, q: f64, end: f64, width: f64) -> Option<f64> {
        histogram_quantile(q, &self.increase(end, width)?)
    }

    /// `sum by (le) (increase(bucket[width]))` at `end`: bounds and cumulative counts, `+Inf`
    /// last (the bench divides by `width` for the controller's `rate()`).
    pub fn buckets(&self, end: f64, width: f64) -> Option<Vec<(f64, f64)>> {
        let bounds = BUCKETS_MS.iter().copied().chain([f64::INFINITY]);
        Some(bounds.zip(self.increase(end, width)?).collect())
    }

    /// `increase(requests[width])` and the same of errors at `end`, extrapolated as
    /// Prometheus extrapolates a counter.
    pub fn counts(&self, end: f64, width: f64) -> (f64, f64) {
        let window = self.window(end, width);
        let range = (end - width, end);
        let requests = extrapolated(
            &self.times[window.clone()],
            &self.requests[window.clone()],
            range,
        );
        let errors = extrapolated(&self.times[window.clone()], &self.errors[window], range);
        (requests, errors)
    }

    /// `sum(rate(errors)) / sum(rate(requests))` and P99 as a Flagger check reads them at
    /// `end` over `width`: None without traffic.
    pub fn success_and_p99(&self, end: f64, width: f64) -> (Option<f64>, Option<f64>) {
        let window = self.window(end, width);
        if window.len() < 2 {
            return (None, None);
        }
        let (a, b) = (window.start, window.end - 1);
        let requests = self.requests[b] - self.requests[a];
        let success =
            (requests > 0.0).then(|| 100.0 * (1.0 - (self.errors[b] - self.errors[a]) / requests));
        (success, self.quantile(0.99, end, width))
    }
}

/// Prometheus's `histogram_quantile`: linear interpolation inside the bucket the rank falls
/// in; the lowest bucket starts at 0; a rank in `+Inf` answers the highest finite bound.
fn histogram_quantile(q: f64, cumulative: &[f64; SLOTS]) -> Option<f64> {
    let total = cumulative[SLOTS - 1];
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let slot = cumulative
        .iter()
        .position(|c| *c >= rank)
        .unwrap_or(SLOTS - 1);
    if slot == SLOTS - 1 {
        return Some(BUCKETS_MS[SLOTS - 2]);
    }
    let (below, start) = match slot {
        0 => (0.0, 0.0),
        _ => (cumulative[slot - 1], BUCKETS_MS[slot - 1]),
    };
    let inside = cumulative[slot] - below;
    let end = BUCKETS_MS[slot];
    Some(start + (end - start) * (rank - below) / inside)
}

/// Prometheus's extrapolation of a counter's increase to its range's edges: by at most half
/// a scrape beyond the first and last samples when they sit far from the edges, and never
/// below zero at the start.
fn extrapolated(times: &[f64], values: &[f64], (start, end): (f64, f64)) -> f64 {
    if times.len() < 2 {
        return 0.0;
    }
    let (first, last) = (values[0], values[values.len() - 1]);
    let sampled = times[times.len() - 1] - times[0];
    let average = sampled / (times.len() - 1) as f64;
    let threshold = average * 1.1;
    let mut to_start = times[0] - start;
    let mut to_end = end - times[times.len() - 1];
    if to_start >= threshold {
        to_start = average / 2.0;
    }
    if to_end >= threshold {
        to_end = average / 2.0;
    }
    let increase = last - first;
    if increase > 0.0 && first >= 0.0 {
        to_start = to_start.min(sampled * first / increase);
    }
    increase * (sampled + to_start + to_end) / sampled
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantile_interpolates_like_prometheus() {
        let mut cumulative = [0.0; SLOTS];
        // 100 requests: 50 in (50, 100], 50 in (100, 250].
        for (slot, value) in cumulative.iter_mut().enumerate() {
            *value = match slot {
                0..=5 => 0.0,
                6 => 50.0,
                _ => 100.0,
            };
        }
        assert_eq!(histogram_quantile(0.5, &cumulative), Some(100.0));
        assert_eq!(histogram_quantile(0.75, &cumulative), Some(175.0));
        assert_eq!(histogram_quantile(0.99, &[0.0; SLOTS]), None);
    }

    #[test]
    fn an_increase_over_three_quarters_of_its_window_is_scaled_up() {
        let times = [15.0, 30.0, 45.0, 60.0];
        let values = [100.0, 200.0, 300.0, 400.0];
        let increase = extrapolated(&times, &values, (0.0, 60.0));
        assert!((increase - 400.0).abs() < 1e-9, "{increase}");
    }
}
