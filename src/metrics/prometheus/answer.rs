//! Reading what Prometheus answered: the HTTP API's JSON, one number for an instant query or one
//! series for a range query. Pure, so every shape a server (or an impostor) may send is tested
//! and fuzzed without one.

use serde::Deserialize;

#[derive(Deserialize)]
struct ApiAnswer {
    status: String,
    #[serde(default)]
    data: Option<ApiData>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct ApiData {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

/// The data of a successful answer; every other answer is an error that says why.
fn data(body: &[u8], promql: &str) -> Result<ApiData, String> {
    let answer: ApiAnswer =
        serde_json::from_slice(body).map_err(|e| format!("unreadable answer: {e}"))?;
    if answer.status != "success" {
        let reason = answer.error.unwrap_or_default();
        return Err(format!("query {promql:?} refused: {reason}"));
    }
    answer.data.ok_or_else(|| "answer without data".to_string())
}

/// An instant query's one number; `Ok(None)` when there is none (no series, or NaN: 0/0 over an
/// idle window is no traffic, which is not a pass).
pub fn instant_number(body: &[u8], promql: &str) -> Result<Option<f64>, String> {
    let data = data(body, promql)?;
    let value = match data.result_type.as_str() {
        "scalar" => data.result.get(1).cloned(),
        "vector" => {
            let samples = data
                .result
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default();
            match samples {
                [] => None,
                [sample] => sample.get("value").and_then(|v| v.get(1)).cloned(),
                more => {
                    let n = more.len();
                    return Err(format!(
                        "query {promql:?} returned {n} series; it must return one number"
                    ));
                }
            }
        }
        other => {
            return Err(format!(
                "query {promql:?} returned a {other}; it must return one number"
            ))
        }
    };
    let Some(value) = value else {
        return Ok(None);
    };
    let number: f64 = value
        .as_str()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| format!("query {promql:?} returned {value}, not a number"))?;
    Ok((!number.is_nan()).then_some(number))
}

/// The series of a range answer (none when the result is not a list).
fn series(data: &ApiData) -> &[serde_json::Value] {
    data.result
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// A range query's `(time, value)` pairs of its one series; no series is an empty list, and
/// points that are not finite numbers are left out.
pub fn range_values(body: &[u8], promql: &str) -> Result<Vec<(f64, f64)>, String> {
    let data = data(body, promql)?;
    let series = series(&data);
    let values = match series {
        [] => return Ok(Vec::new()),
        [one] => one["values"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default(),
        more => {
            let n = more.len();
            return Err(format!(
                "query {promql:?} returned {n} series; it must return one"
            ));
        }
    };
    Ok(values
        .iter()
        .filter_map(|pair| {
            let at = pair.get(0)?.as_f64()?;
            let value: f64 = pair.get(1)?.as_str()?.parse().ok()?;
            value.is_finite().then_some((at, value))
        })
        .collect())
}

/// A histogram's buckets at each step, from a range query that returns one series per `le`:
/// by timestamp (Unix ms), the (upper bound, cumulative value) pairs in ascending order of
/// bound, `+Inf` last. A series without a readable `le`, or a value that is not finite, is left
/// out; a step without a `+Inf` bucket is no histogram and is dropped.
pub fn range_histogram(
    body: &[u8],
    promql: &str,
) -> Result<std::collections::BTreeMap<i64, Vec<(f64, f64)>>, String> {
    let data = data(body, promql)?;
    let series = series(&data);
    let mut steps: std::collections::BTreeMap<i64, Vec<(f64, f64)>> = Default::default();
    for one in series {
        let Some(bound) = one["metric"]["le"]
            .as_str()
            .and_then(|le| le.parse::<f64>().ok())
        else {
            continue;
        };
        if bound.is_nan() {
            continue;
        }
        for pair in one["values"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let at = pair.get(0).and_then(serde_json::Value::as_f64);
            let value = pair.get(1).and_then(|v| v.as_str()?.parse::<f64>().ok());
            if let (Some(at), Some(value)) = (at, value.filter(|v| v.is_finite())) {
                let at = (at * 1000.0).round() as i64;
                steps.entry(at).or_default().push((bound, value));
            }
        }
    }
    steps.retain(|_, buckets| {
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        // Two series whose `le` read as the same bound ("100", "100.0") are one bucket.
        buckets.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                kept.1 += later.1;
            }
            same
        });
        buckets.last().is_some_and(|(bound, _)| bound.is_infinite())
    });
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_number_or_none_and_every_other_shape_is_an_error() {
        let vector = br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"99.5"]}]}}"#;
        assert_eq!(instant_number(vector, "q"), Ok(Some(99.5)));
        let empty = br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert_eq!(instant_number(empty, "q"), Ok(None));
        let histogram = br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"le":"+Inf"},"values":[[10,"4"],[20,"6"]]},{"metric":{"le":"100"},"values":[[10,"3"],[20,"NaN"]]},{"metric":{},"values":[[10,"1"]]}]}}"#;
        let steps = range_histogram(histogram, "q").unwrap();
        assert_eq!(steps[&10_000], vec![(100.0, 3.0), (f64::INFINITY, 4.0)]);
        assert_eq!(steps[&20_000], vec![(f64::INFINITY, 6.0)]);
        let nan = br#"{"status":"success","data":{"resultType":"scalar","result":[1,"NaN"]}}"#;
        assert_eq!(instant_number(nan, "q"), Ok(None));
        for bad in [
            &br#"{"status":"error","error":"bad query"}"#[..],
            br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#,
            br#"{"status":"success","data":{"resultType":"vector","result":[{"value":[1,2]}]}}"#,
            br#"not json"#,
        ] {
            assert!(instant_number(bad, "q").is_err());
        }
    }
}
