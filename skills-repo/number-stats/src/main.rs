//! number-stats: descriptive statistics (count, sum, mean, median, min, max, standard deviations).
use serde_json::{json, Value};
use std::io::Read;
use std::process::exit;

#[derive(Debug, PartialEq)]
struct Stats {
    count: usize,
    sum: f64,
    mean: f64,
    median: f64,
    min: f64,
    max: f64,
    stddev: f64,
    sample_stddev: Option<f64>,
}

/// Statistics of a non-empty slice of finite numbers; None when empty.
fn stats(numbers: &[f64]) -> Option<Stats> {
    if numbers.is_empty() {
        return None;
    }
    let n = numbers.len() as f64;
    let sum: f64 = numbers.iter().sum();
    let mean = sum / n;
    let mut sorted = numbers.to_vec();
    sorted.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let mid = sorted.len() / 2;
    let median = if sorted.len() % 2 == 1 { sorted[mid] } else { (sorted[mid - 1] + sorted[mid]) / 2.0 };
    let squares: f64 = numbers.iter().map(|x| (x - mean) * (x - mean)).sum();
    let sample_stddev = if numbers.len() >= 2 { Some((squares / (n - 1.0)).sqrt()) } else { None };
    Some(Stats {
        count: numbers.len(),
        sum,
        mean,
        median,
        min: sorted[0],
        max: sorted[sorted.len() - 1],
        stddev: (squares / n).sqrt(),
        sample_stddev,
    })
}

fn fail(message: &str) -> ! {
    println!("{}", json!({ "error": message }));
    exit(1)
}

fn main() {
    let mut raw = String::new();
    if std::io::stdin().read_to_string(&mut raw).is_err() {
        fail("input is not valid UTF-8");
    }
    let input: Value = serde_json::from_str(&raw).unwrap_or_else(|e| fail(&format!("input is not valid JSON: {}", e)));
    let items = match input.get("numbers") {
        Some(Value::Array(a)) => a,
        Some(_) => fail("\"numbers\" must be an array of numbers"),
        None => fail("missing required field \"numbers\""),
    };
    let mut numbers = Vec::with_capacity(items.len());
    for (i, v) in items.iter().enumerate() {
        match v.as_f64() {
            Some(x) if v.is_number() => numbers.push(x),
            _ => fail(&format!("\"numbers\"[{}] must be a number, got {}", i, v)),
        }
    }
    let out = match stats(&numbers) {
        None => json!({
            "count": 0, "sum": null, "mean": null, "median": null,
            "min": null, "max": null, "stddev": null, "sample_stddev": null
        }),
        Some(s) => {
            let all = [s.sum, s.mean, s.median, s.stddev, s.sample_stddev.unwrap_or(0.0)];
            if all.iter().any(|x| !x.is_finite()) {
                fail("numbers are too large: a result overflows a 64-bit float");
            }
            json!({
                "count": s.count, "sum": s.sum, "mean": s.mean, "median": s.median,
                "min": s.min, "max": s.max, "stddev": s.stddev, "sample_stddev": s.sample_stddev
            })
        }
    };
    println!("{}", out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_is_none() {
        assert_eq!(stats(&[]), None);
    }

    #[test]
    fn single_value() {
        let s = stats(&[7.0]).unwrap();
        assert_eq!((s.count, s.sum, s.mean, s.median, s.min, s.max, s.stddev), (1, 7.0, 7.0, 7.0, 7.0, 7.0, 0.0));
        assert_eq!(s.sample_stddev, None);
    }

    #[test]
    fn known_values() {
        let s = stats(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]).unwrap();
        assert_eq!(s.mean, 5.0);
        assert_eq!(s.median, 4.5);
        assert_eq!(s.stddev, 2.0);
        assert!((s.sample_stddev.unwrap() - 2.138089935299395).abs() < 1e-12);
        assert_eq!((s.min, s.max), (2.0, 9.0));
    }

    #[test]
    fn odd_median_unsorted() {
        let s = stats(&[3.0, -1.0, 10.0]).unwrap();
        assert_eq!(s.median, 3.0);
        assert_eq!(s.min, -1.0);
    }
}
