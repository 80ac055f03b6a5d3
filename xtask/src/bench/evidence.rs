//! Where a load's latency goes, from the replicas' side: their own request, pool-acquire and
//! query histograms (`GET /metrics`, Prometheus text) and the kernel's run-queue delay of
//! their threads (`/proc/PID/task/*/schedstat`), each sampled before and after a load.

use std::collections::BTreeMap;

use serde::Serialize;

/// Cumulative bucket counts of one histogram, summed over the series that match, by `le`.
pub type Buckets = BTreeMap<u64, u64>;

/// `le` in nanoseconds as an ordered key (`+Inf` is `u64::MAX`).
fn le_key(le: &str) -> Option<u64> {
    if le == "+Inf" {
        return Some(u64::MAX);
    }
    let seconds: f64 = le.parse().ok()?;
    Some((seconds * 1e9).round() as u64)
}

/// The `_bucket` lines of histogram `name` whose labels contain every one of `labels`
/// (`key="value"` pieces), summed by bucket.
pub fn buckets(text: &str, name: &str, labels: &[&str]) -> Buckets {
    let prefix = format!("{name}_bucket{{");
    let mut out = Buckets::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(&prefix) else {
            continue;
        };
        let Some((inside, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        if !labels.iter().all(|l| inside.contains(l)) {
            continue;
        }
        let Some(le) = inside
            .split(',')
            .find_map(|kv| kv.strip_prefix("le=\""))
            .map(|v| v.trim_end_matches('"'))
            .and_then(le_key)
        else {
            continue;
        };
        let Ok(count) = value.trim().parse::<f64>() else {
            continue;
        };
        *out.entry(le).or_default() += count as u64;
    }
    out
}

/// The upper bound, in milliseconds, of the bucket that holds quantile `q` of what was
/// recorded between `before` and `after` (None when nothing was; infinite past the last bucket).
pub fn quantile_ms(before: &Buckets, after: &Buckets, q: f64) -> Option<f64> {
    let diff: Vec<(u64, u64)> = after
        .iter()
        .map(|(le, n)| (*le, n.saturating_sub(before.get(le).copied().unwrap_or(0))))
        .collect();
    let total = diff.last()?.1;
    if total == 0 {
        return None;
    }
    let rank = (q * total as f64).ceil() as u64;
    diff.iter().find(|(_, n)| *n >= rank).map(|(le, _)| {
        if *le == u64::MAX {
            f64::INFINITY
        } else {
            *le as f64 / 1e6
        }
    })
}

/// How many were recorded between two samples.
pub fn count(before: &Buckets, after: &Buckets) -> u64 {
    let last = |b: &Buckets| b.get(&u64::MAX).copied().unwrap_or(0);
    last(after).saturating_sub(last(before))
}

/// A gauge's value (`name value`, no labels).
pub fn gauge(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// One thread's `/proc/PID/task/TID/schedstat`: time on a CPU and time runnable but waiting
/// for one, in nanoseconds.
pub fn schedstat(text: &str) -> Option<(u64, u64)> {
    let mut fields = text.split_whitespace().map(|f| f.parse::<u64>().ok());
    Some((fields.next()??, fields.next()??))
}

/// What the replicas saw during one load, against what the client (wrk) saw.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ServerSide {
    /// Requests the replicas' own histograms counted.
    pub requests: u64,
    /// Upper bucket bounds holding the 99th percentile, over all replicas: the request in the
    /// api (routing to response head), the wait for a pooled connection, the query.
    pub request_p99_ms: Option<f64>,
    pub pool_acquire_p99_ms: Option<f64>,
    pub query_p99_ms: Option<f64>,
    /// Runtime worker threads per replica (`tokio_workers`).
    pub workers_per_replica: Option<f64>,
    /// The replicas' threads together: CPU time and time runnable but waiting for a CPU, per
    /// second of load (ms/s).
    pub cpu_ms_per_s: Option<f64>,
    pub run_queue_wait_ms_per_s: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn testdata(name: &str) -> String {
        std::fs::read_to_string(format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    #[test]
    fn the_p99_bucket_of_what_a_load_added_to_a_replicas_histogram() {
        let text = testdata("bench-api-metrics.txt");
        let route = ["route=\"/documents/{id}/content\""];
        let after = buckets(&text, "http_request_duration_seconds", &route);
        assert!(count(&Buckets::new(), &after) > 0, "{after:?}");
        let p99 = quantile_ms(&Buckets::new(), &after, 0.99).unwrap();
        assert!(p99 > 0.0 && p99 < 10_000.0, "{p99}");
        // Nothing new between two equal samples.
        assert_eq!(quantile_ms(&after, &after, 0.99), None);
        assert!(
            buckets(
                &text,
                "db_pool_acquire_seconds",
                &["what=\"find_document\""]
            )
            .len()
                > 3
        );
        assert!(gauge(&text, "tokio_workers").unwrap() >= 1.0);
        assert_eq!(gauge(&text, "no_such_gauge"), None);
    }

    #[test]
    fn quantiles_come_from_the_difference_of_two_samples() {
        let b = |v: &[(u64, u64)]| v.iter().copied().collect::<Buckets>();
        let before = b(&[(1_000_000, 10), (8_000_000, 10), (u64::MAX, 10)]);
        // 100 new: 90 under 1 ms, 9 under 8 ms, 1 beyond.
        let after = b(&[(1_000_000, 100), (8_000_000, 109), (u64::MAX, 110)]);
        assert_eq!(count(&before, &after), 100);
        assert_eq!(quantile_ms(&before, &after, 0.5), Some(1.0));
        assert_eq!(quantile_ms(&before, &after, 0.99), Some(8.0));
        assert_eq!(quantile_ms(&before, &after, 1.0), Some(f64::INFINITY));
    }

    #[test]
    fn schedstat_gives_cpu_and_run_queue_time() {
        assert_eq!(schedstat("123 456 7\n"), Some((123, 456)));
        assert_eq!(schedstat("x"), None);
        assert_eq!(schedstat(""), None);
    }
}
