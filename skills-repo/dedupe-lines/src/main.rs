//! dedupe-lines: drop repeated lines, keeping first occurrences in order.
use serde_json::{json, Value};
use std::collections::HashSet;
use std::io::Read;
use std::process::exit;

#[derive(Debug, PartialEq)]
struct Deduped {
    text: String,
    removed: usize,
    lines: usize,
}

/// Split text into lines; one trailing "\n" terminates the last line. Returns (lines, had_trailing_newline).
fn split_lines(text: &str) -> (Vec<&str>, bool) {
    if text.is_empty() {
        return (Vec::new(), false);
    }
    match text.strip_suffix('\n') {
        Some(body) => (body.split('\n').collect(), true),
        None => (text.split('\n').collect(), false),
    }
}

fn dedupe(text: &str, case_insensitive: bool, trim: bool) -> Deduped {
    let (lines, trailing) = split_lines(text);
    let total = lines.len();
    let mut seen = HashSet::new();
    let mut kept = Vec::new();
    for line in lines {
        let compared = if trim { line.trim() } else { line };
        let key = if case_insensitive { compared.to_lowercase() } else { compared.to_string() };
        if seen.insert(key) {
            kept.push(line);
        }
    }
    let mut out = kept.join("\n");
    if trailing && !kept.is_empty() {
        out.push('\n');
    }
    Deduped { text: out, removed: total - kept.len(), lines: kept.len() }
}

fn fail(message: &str) -> ! {
    println!("{}", json!({ "error": message }));
    exit(1)
}

fn flag(input: &Value, name: &str) -> bool {
    match input.get(name) {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => fail(&format!("\"{}\" must be a boolean", name)),
    }
}

fn main() {
    let mut raw = String::new();
    if std::io::stdin().read_to_string(&mut raw).is_err() {
        fail("input is not valid UTF-8");
    }
    let input: Value = serde_json::from_str(&raw).unwrap_or_else(|e| fail(&format!("input is not valid JSON: {}", e)));
    let text = match input.get("text") {
        Some(Value::String(s)) => s,
        Some(_) => fail("\"text\" must be a string"),
        None => fail("missing required field \"text\""),
    };
    let d = dedupe(text, flag(&input, "case_insensitive"), flag(&input, "trim"));
    println!("{}", json!({ "text": d.text, "removed": d.removed, "lines": d.lines }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_first_occurrence_order() {
        assert_eq!(
            dedupe("b\na\nb\nc\na\n", false, false),
            Deduped { text: "b\na\nc\n".to_string(), removed: 2, lines: 3 }
        );
        assert_eq!(dedupe("x\nx", false, false), Deduped { text: "x".to_string(), removed: 1, lines: 1 });
    }

    #[test]
    fn empty_and_blank_lines() {
        assert_eq!(dedupe("", false, false), Deduped { text: String::new(), removed: 0, lines: 0 });
        assert_eq!(dedupe("\n\n\n", false, false), Deduped { text: "\n".to_string(), removed: 2, lines: 1 });
    }

    #[test]
    fn options_affect_comparison_only() {
        assert_eq!(dedupe("Apple\napple\nÉTÉ\nété", true, false).text, "Apple\nÉTÉ");
        assert_eq!(dedupe("  a\na  \nb", false, true).text, "  a\nb");
        assert_eq!(dedupe("  a\na  \nb", false, false).removed, 0);
        assert_eq!(dedupe(" A\na ", true, true).text, " A");
    }
}
