//! extract-emails: find email addresses in text.
use regex::Regex;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::io::Read;
use std::process::exit;

const PATTERN: &str = r"[A-Za-z0-9_%+\-]+(?:\.[A-Za-z0-9_%+\-]+)*@(?:[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,}";

/// Characters that must not touch a match on its left (it would be a truncated address).
fn bad_before(c: char) -> bool {
    c.is_alphanumeric() || "._%+-@".contains(c)
}

/// Characters that must not follow a match (the address would continue in an invalid way).
fn bad_after(c: char) -> bool {
    c.is_alphanumeric() || "_%+-@".contains(c)
}

fn extract(text: &str, unique: bool, lowercase_domain: bool) -> (Vec<String>, Vec<String>) {
    let re = Regex::new(PATTERN).expect("valid regex");
    let mut emails: Vec<String> = Vec::new();
    let mut seen = BTreeSet::new();
    let mut domains = BTreeSet::new();
    for m in re.find_iter(text) {
        let before = text[..m.start()].chars().next_back();
        let after = text[m.end()..].chars().next();
        if before.map_or(false, bad_before) || after.map_or(false, bad_after) {
            continue;
        }
        let found = m.as_str();
        let at = match found.rfind('@') {
            Some(i) => i,
            None => continue,
        };
        let local = &found[..at];
        let domain = if lowercase_domain { found[at + 1..].to_ascii_lowercase() } else { found[at + 1..].to_string() };
        let email = format!("{}@{}", local, domain);
        if unique && !seen.insert(email.clone()) {
            continue;
        }
        domains.insert(domain);
        emails.push(email);
    }
    (emails, domains.into_iter().collect())
}

fn fail(message: &str) -> ! {
    println!("{}", json!({ "error": message }));
    exit(1)
}

fn bool_field(input: &Value, name: &str, default: bool) -> bool {
    match input.get(name) {
        None => default,
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
    let unique = bool_field(&input, "unique", true);
    let lowercase_domain = bool_field(&input, "lowercase_domain", true);
    let (emails, domains) = extract(text, unique, lowercase_domain);
    println!("{}", json!({ "emails": emails, "count": emails.len(), "domains": domains }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_and_trailing_punctuation() {
        let (e, d) = extract("Mail bob.smith+tag@Example.COM, or (ann_lee@mail.example.org).", true, true);
        assert_eq!(e, vec!["bob.smith+tag@example.com", "ann_lee@mail.example.org"]);
        assert_eq!(d, vec!["example.com", "mail.example.org"]);
    }

    #[test]
    fn unique_and_case_options() {
        let t = "a@X.io a@x.io a@X.io";
        assert_eq!(extract(t, true, true).0, vec!["a@x.io"]);
        assert_eq!(extract(t, true, false).0, vec!["a@X.io", "a@x.io"]);
        assert_eq!(extract(t, false, true).0.len(), 3);
    }

    #[test]
    fn rejects_malformed() {
        assert!(extract("no@tld a@b.c @x.com user@ x@-bad.com", true, true).0.is_empty());
        assert!(extract("jürgen@example.de", true, true).0.is_empty());
        assert!(extract("a@b.com9 a@b.com-x", true, true).0.is_empty());
        assert_eq!(extract("日本 info@example.jp。", true, true).0, vec!["info@example.jp"]);
    }

    #[test]
    fn empty_text() {
        let (e, d) = extract("", true, true);
        assert!(e.is_empty() && d.is_empty());
    }
}
