//! word-count: count words, lines and characters of a text.
use serde_json::{json, Value};
use std::io::Read;
use std::process::exit;

#[derive(Debug, PartialEq)]
struct Counts {
    words: usize,
    lines: usize,
    chars: usize,
}

fn count(text: &str) -> Counts {
    let newlines = text.matches('\n').count();
    let lines = if text.is_empty() || text.ends_with('\n') { newlines } else { newlines + 1 };
    Counts { words: text.split_whitespace().count(), lines, chars: text.chars().count() }
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
    let text = match input.get("text") {
        Some(Value::String(s)) => s,
        Some(_) => fail("\"text\" must be a string"),
        None => fail("missing required field \"text\""),
    };
    let c = count(text);
    println!("{}", json!({ "words": c.words, "lines": c.lines, "chars": c.chars }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty() {
        assert_eq!(count(""), Counts { words: 0, lines: 0, chars: 0 });
    }

    #[test]
    fn trailing_newline_is_not_an_extra_line() {
        assert_eq!(count("a b\nc\n"), Counts { words: 3, lines: 2, chars: 6 });
        assert_eq!(count("a b\nc"), Counts { words: 3, lines: 2, chars: 5 });
    }

    #[test]
    fn unicode_counts_scalar_values() {
        assert_eq!(count("héllo wörld ✓").chars, 13);
        assert_eq!(count("日本語\u{3000}テキスト").words, 2);
    }
}
