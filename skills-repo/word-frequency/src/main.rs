//! word-frequency: the most frequent words of a text with their counts.
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::Read;
use std::process::exit;
use unicode_segmentation::UnicodeSegmentation;

#[derive(Debug, PartialEq)]
struct Frequencies {
    words: Vec<(String, usize)>,
    total: usize,
    unique: usize,
}

/// Count words; `top` of 0 means no limit.
fn frequencies(text: &str, top: usize, case_sensitive: bool) -> Frequencies {
    let mut counts: HashMap<String, usize> = HashMap::new();
    let mut total = 0;
    for word in text.unicode_words() {
        let key = if case_sensitive { word.to_string() } else { word.to_lowercase() };
        *counts.entry(key).or_insert(0) += 1;
        total += 1;
    }
    let unique = counts.len();
    let mut words: Vec<(String, usize)> = counts.into_iter().collect();
    words.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    if top > 0 {
        words.truncate(top);
    }
    Frequencies { words, total, unique }
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
    if !input.is_object() {
        fail("input must be a JSON object");
    }
    let text = match input.get("text") {
        Some(Value::String(s)) => s,
        Some(_) => fail("\"text\" must be a string"),
        None => fail("missing required field \"text\""),
    };
    let top = match input.get("top") {
        None | Some(Value::Null) => 10,
        Some(v) => match v.as_u64() {
            Some(n) => n.min(usize::MAX as u64) as usize,
            None => fail("\"top\" must be a non-negative integer"),
        },
    };
    let case_sensitive = match input.get("case_sensitive") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => fail("\"case_sensitive\" must be a boolean"),
    };
    let f = frequencies(text, top, case_sensitive);
    let words: Vec<Value> = f.words.iter().map(|(w, c)| json!({ "word": w, "count": c })).collect();
    println!("{}", json!({ "words": words, "total_words": f.total, "unique_words": f.unique }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_by_count_then_word() {
        let f = frequencies("b a c b a b", 10, false);
        assert_eq!(f.words, vec![("b".to_string(), 3), ("a".to_string(), 2), ("c".to_string(), 1)]);
        assert_eq!((f.total, f.unique), (6, 3));
    }

    #[test]
    fn case_folding_and_top() {
        let f = frequencies("The the THE cat", 1, false);
        assert_eq!(f.words, vec![("the".to_string(), 3)]);
        assert_eq!(f.unique, 2);
        let f = frequencies("The the THE cat", 0, true);
        assert_eq!(f.unique, 4);
        assert_eq!(f.words.len(), 4);
    }

    #[test]
    fn punctuation_and_empty() {
        assert_eq!(frequencies("", 10, false), Frequencies { words: vec![], total: 0, unique: 0 });
        let f = frequencies("-- ... !!", 10, false);
        assert_eq!(f.total, 0);
        let f = frequencies("Ärger, ärger; don't stop", 10, false);
        assert_eq!(f.words[0], ("ärger".to_string(), 2));
        assert!(f.words.contains(&("don't".to_string(), 1)));
    }
}
