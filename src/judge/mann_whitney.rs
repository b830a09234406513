//! The Mann–Whitney U test on sub-interval samples of a metric, canary against primary, with the
//! allowed change built into the hypothesis: "canary > primary × (1 + allowed)" is what a
//! significant result means, so a tiny but real shift inside the allowance never fails a step.

use super::stats::{median, normal_cdf};

/// One-sided p-value that `canary` tends to exceed `baseline` (normal approximation with tie
/// and continuity corrections; fine from about five samples a side).
pub fn p_greater(canary: &[f64], baseline: &[f64]) -> Option<f64> {
    let (n1, n2) = (canary.len() as f64, baseline.len() as f64);
    if canary.len() < 3 || baseline.len() < 3 {
        return None;
    }
    // U counts the pairs where the canary is larger (ties count half), from the ranks.
    let mut pooled: Vec<(f64, bool)> = canary
        .iter()
        .map(|v| (*v, true))
        .chain(baseline.iter().map(|v| (*v, false)))
        .collect();
    pooled.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n = pooled.len();
    let mut rank_sum = 0.0;
    let mut tie_term = 0.0;
    let mut start = 0;
    while start < n {
        let mut end = start;
        while end + 1 < n && pooled[end + 1].0 == pooled[start].0 {
            end += 1;
        }
        let average_rank = (start + end) as f64 / 2.0 + 1.0;
        let tied = (end - start + 1) as f64;
        tie_term += tied * tied * tied - tied;
        rank_sum += pooled[start..=end].iter().filter(|(_, c)| *c).count() as f64 * average_rank;
        start = end + 1;
    }
    let u = rank_sum - n1 * (n1 + 1.0) / 2.0;
    let total = n1 + n2;
    let variance = n1 * n2 / 12.0 * ((total + 1.0) - tie_term / (total * (total - 1.0)));
    if variance <= 0.0 {
        return Some(0.5);
    }
    let z = (u - n1 * n2 / 2.0 - 0.5) / variance.sqrt();
    Some(1.0 - normal_cdf(z))
}

/// The Hodges–Lehmann estimate of the ratio canary / primary: the median of all pairwise
/// ratios, robust to the outliers a P99 per sub-interval has.
pub fn ratio_estimate(canary: &[f64], baseline: &[f64]) -> Option<f64> {
    let mut ratios: Vec<f64> = canary
        .iter()
        .flat_map(|c| baseline.iter().map(move |b| (c, b)))
        .filter(|(_, b)| **b > 0.0)
        .map(|(c, b)| c / b)
        .collect();
    median(&mut ratios)
}

fn scaled(values: &[f64], factor: f64) -> Vec<f64> {
    values.iter().map(|v| v * factor).collect()
}

/// The one-sided p-values for "canary above primary × up" and "canary below primary × down".
pub fn shifted_tests(canary: &[f64], primary: &[f64], up: f64, down: f64) -> Option<(f64, f64)> {
    let above = p_greater(canary, &scaled(primary, up))?;
    let below = p_greater(&scaled(primary, down), canary)?;
    Some((above, below))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separated_samples_are_significant_and_equal_ones_are_not() {
        let low: Vec<f64> = (0..12).map(|i| 100.0 + i as f64).collect();
        let high: Vec<f64> = (0..12).map(|i| 200.0 + i as f64).collect();
        assert!(p_greater(&high, &low).unwrap() < 1e-4);
        assert!(p_greater(&low, &high).unwrap() > 0.999);
        let p = p_greater(&low, &low).unwrap();
        assert!((0.4..0.6).contains(&p), "{p}");
        let ratio = ratio_estimate(&high, &low).unwrap();
        assert!((1.8..2.2).contains(&ratio), "{ratio}");
        // Inside a +150 % allowance the shift is not significant.
        let (above, _) = shifted_tests(&high, &low, 2.5, 0.5).unwrap();
        assert!(above > 0.5);
        assert_eq!(p_greater(&[1.0, 2.0], &low), None);
    }
}
