//! regex-extract: all matches (or one capture group) of a regular expression in a text.
use regex::Regex;
use serde_json::{json, Value};
use std::io::Read;
use std::process::exit;

#[derive(Debug, PartialEq)]
enum Group {
    Index(usize),
    Name(String),
}

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

/// Return the whole matches or the selected group's values.
fn extract(text: &str, pattern: &str, group: &Group) -> Result<Vec<String>, String> {
    let re = compile(pattern)?;
    let index = match group {
        Group::Index(i) if *i < re.captures_len() => *i,
        Group::Index(i) => {
            return Err(format!(
                "group {} does not exist (pattern has {} capture groups)",
                i,
                re.captures_len() - 1
            ))
        }
        Group::Name(name) => match re.capture_names().position(|n| n == Some(name.as_str())) {
            Some(i) => i,
            None => return Err(format!("no capture group named \"{}\"", name)),
        },
    };
    if index == 0 {
        return Ok(re.find_iter(text).map(|m| m.as_str().to_string()).collect());
    }
    Ok(re
        .captures_iter(text)
        .filter_map(|c| c.get(index).map(|m| m.as_str().to_string()))
        .collect())
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
    let pattern = match input.get("pattern") {
        Some(Value::String(s)) => s,
        Some(_) => fail("\"pattern\" must be a string"),
        None => fail("missing required field \"pattern\""),
    };
    let group = match input.get("group") {
        None | Some(Value::Null) => Group::Index(0),
        Some(Value::String(s)) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => match s.parse::<usize>() {
            Ok(i) => Group::Index(i),
            Err(_) => fail("\"group\" number is too large"),
        },
        Some(Value::String(s)) => Group::Name(s.clone()),
        Some(v) => match v.as_u64() {
            Some(i) => Group::Index(i.min(usize::MAX as u64) as usize),
            None => fail("\"group\" must be a non-negative integer or a group name"),
        },
    };
    let matches = extract(text, pattern, &group).unwrap_or_else(|e| fail(&e));
    let count = matches.len();
    println!("{}", json!({ "matches": matches, "count": count }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_matches() {
        assert_eq!(extract("a1 b22 c333", r"\d+", &Group::Index(0)).unwrap(), vec!["1", "22", "333"]);
        assert!(extract("", r"\d+", &Group::Index(0)).unwrap().is_empty());
    }

    #[test]
    fn groups_by_index_and_name() {
        let p = r"(?P<key>\w+)=(?P<val>\w+)?";
        assert_eq!(extract("a=1 b= c=3", p, &Group::Name("key".into())).unwrap(), vec!["a", "b", "c"]);
        // non-participating group is skipped
        assert_eq!(extract("a=1 b= c=3", p, &Group::Index(2)).unwrap(), vec!["1", "3"]);
    }

    #[test]
    fn errors_are_one_line() {
        let e = extract("x", "(", &Group::Index(0)).unwrap_err();
        assert_eq!(e, "invalid regex: unclosed group");
        assert_eq!(extract("x", "(x)", &Group::Index(2)).unwrap_err(), "group 2 does not exist (pattern has 1 capture groups)");
        assert_eq!(extract("x", "(x)", &Group::Name("y".into())).unwrap_err(), "no capture group named \"y\"");
    }
}
