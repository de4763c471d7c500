//! fuzzy-match: rank candidates by Levenshtein distance to a query.
use serde_json::{json, Value};
use std::io::Read;
use std::process::exit;

#[derive(Debug, PartialEq)]
struct Match {
    candidate: String,
    distance: usize,
    similarity: f64,
    index: usize,
}

fn round4(x: f64) -> f64 {
    (x * 10000.0).round() / 10000.0
}

fn rank(query: &str, candidates: &[String], limit: usize, case_sensitive: bool) -> Vec<Match> {
    let fold = |s: &str| if case_sensitive { s.to_string() } else { s.to_lowercase() };
    let q = fold(query);
    let mut matches: Vec<Match> = candidates
        .iter()
        .enumerate()
        .map(|(index, candidate)| {
            let c = fold(candidate);
            Match {
                candidate: candidate.clone(),
                distance: strsim::levenshtein(&q, &c),
                similarity: round4(strsim::normalized_levenshtein(&q, &c)),
                index,
            }
        })
        .collect();
    matches.sort_by_key(|m| (m.distance, m.index));
    matches.truncate(limit);
    matches
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
    let query = match input.get("query") {
        Some(Value::String(s)) => s,
        Some(_) => fail("\"query\" must be a string"),
        None => fail("missing required field \"query\""),
    };
    let candidates: Vec<String> = match input.get("candidates") {
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => s.clone(),
                _ => fail(&format!("\"candidates\"[{}] must be a string", i)),
            })
            .collect(),
        Some(_) => fail("\"candidates\" must be an array of strings"),
        None => fail("missing required field \"candidates\""),
    };
    let limit = match input.get("limit") {
        None | Some(Value::Null) => 5,
        Some(v) => match v.as_u64() {
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
            None => fail("\"limit\" must be a non-negative integer"),
        },
    };
    let case_sensitive = match input.get("case_sensitive") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => fail("\"case_sensitive\" must be a boolean"),
    };
    let matches: Vec<Value> = rank(query, &candidates, limit, case_sensitive)
        .into_iter()
        .map(|m| json!({ "candidate": m.candidate, "distance": m.distance, "similarity": m.similarity, "index": m.index }))
        .collect();
    println!("{}", json!({ "matches": matches }));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn ranks_by_distance_then_index() {
        let m = rank("kitten", &strings(&["sitting", "kitten", "mitten", "bitten"]), 5, false);
        let order: Vec<(usize, usize)> = m.iter().map(|m| (m.index, m.distance)).collect();
        assert_eq!(order, vec![(1, 0), (2, 1), (3, 1), (0, 3)]);
        assert_eq!(m[0].similarity, 1.0);
        assert_eq!(m[3].similarity, 0.5714); // 1 - 3/7
    }

    #[test]
    fn limit_and_empty() {
        assert!(rank("x", &[], 5, false).is_empty());
        assert_eq!(rank("a", &strings(&["a", "b", "c"]), 2, false).len(), 2);
        assert!(rank("a", &strings(&["a"]), 0, false).is_empty());
        let both_empty = rank("", &strings(&[""]), 5, false);
        assert_eq!((both_empty[0].distance, both_empty[0].similarity), (0, 1.0));
    }

    #[test]
    fn case_handling_and_unicode() {
        assert_eq!(rank("HELLO", &strings(&["hello"]), 5, false)[0].distance, 0);
        assert_eq!(rank("HELLO", &strings(&["hello"]), 5, true)[0].distance, 5);
        assert_eq!(rank("café", &strings(&["cafe"]), 5, false)[0].distance, 1);
        assert_eq!(rank("ÉTÉ", &strings(&["été"]), 5, false)[0].distance, 0);
    }
}
