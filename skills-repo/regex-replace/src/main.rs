//! regex-replace: replace regular expression matches in a text, with capture group references.
use regex::Regex;
use serde_json::{json, Value};
use std::io::Read;
use std::process::exit;

/// Compile a pattern, turning the multi-line regex error into one line.
fn compile(pattern: &str) -> Result<Regex, String> {
    Regex::new(pattern).map_err(|e| {
        let text = e.to_string();
        let detail = text
            .lines()
            .find_map(|l| l.strip_prefix("error: "))
            .map(|s| s.to_string())
            .unwrap_or_else(|| text.split_whitespace().collect::<Vec<_>>().join(" "));
        format!("invalid regex: {}", detail)
    })
}

/// Replace up to `limit` matches (0 = all); returns the new text and the number of replacements.
fn replace(text: &str, pattern: &str, replacement: &str, limit: usize) -> Result<(String, usize), String> {
    let re = compile(pattern)?;
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    let mut n = 0;
    for caps in re.captures_iter(text) {
        if limit > 0 && n >= limit {
            break;
        }
        let m = match caps.get(0) {
            Some(m) => m,
            None => continue,
        };
        out.push_str(&text[last..m.start()]);
        caps.expand(replacement, &mut out);
        last = m.end();
        n += 1;
    }
    out.push_str(&text[last..]);
    Ok((out, n))
}

fn fail(message: &str) -> ! {
    println!("{}", json!({ "error": message }));
    exit(1)
}

fn get_string<'a>(input: &'a Value, field: &str) -> &'a str {
    match input.get(field) {
        Some(Value::String(s)) => s,
        Some(_) => fail(&format!("\"{}\" must be a string", field)),
        None => fail(&format!("missing required field \"{}\"", field)),
    }
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
    let text = get_string(&input, "text");
    let pattern = get_string(&input, "pattern");
    let replacement = get_string(&input, "replacement");
    let limit = match input.get("limit") {
        None | Some(Value::Null) => 0,
        Some(v) => match v.as_u64() {
            Some(n) => n.min(usize::MAX as u64) as usize,
            None => fail("\"limit\" must be a non-negative integer"),
        },
    };
    let (result, n) = replace(text, pattern, replacement, limit).unwrap_or_else(|e| fail(&e));
    println!("{}", json!({ "text": result, "replacements": n }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_all_by_default() {
        assert_eq!(replace("a1b22c", r"\d+", "#", 0).unwrap(), ("a#b#c".to_string(), 2));
        assert_eq!(replace("", r"\d+", "#", 0).unwrap(), (String::new(), 0));
    }

    #[test]
    fn group_references_and_limit() {
        let p = r"(?P<first>\w+) (\w+)";
        assert_eq!(replace("ab cd ef gh", p, "$2 ${first}", 0).unwrap(), ("cd ab gh ef".to_string(), 2));
        assert_eq!(replace("ab cd ef gh", p, "${2}_$$", 1).unwrap(), ("cd_$ ef gh".to_string(), 1));
    }

    #[test]
    fn empty_matches_and_errors() {
        assert_eq!(replace("abc", "x*", "-", 0).unwrap(), ("-a-b-c-".to_string(), 4));
        assert_eq!(replace("abc", "[", "-", 0).unwrap_err(), "invalid regex: unclosed character class");
    }
}
