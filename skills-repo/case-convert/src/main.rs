//! case-convert: split text into words and re-join them in a target case style.
use serde_json::{json, Value};
use std::io::Read;
use std::process::exit;

const TARGETS: [&str; 8] = ["snake", "camel", "pascal", "kebab", "title", "upper", "lower", "constant"];

/// Split text into words. Separators are all characters that are neither letters nor digits.
/// Inside a run of letters/digits a new word starts at:
/// - an upper-case letter preceded by a lower-case letter or a digit ("fooBar", "v2Api"),
/// - the last upper-case letter of an acronym followed by a lower-case letter ("HTTPServer").
fn split_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    for run in text.split(|c: char| !c.is_alphanumeric()) {
        let chars: Vec<char> = run.chars().collect();
        let mut current = String::new();
        for (i, &c) in chars.iter().enumerate() {
            if i > 0 && c.is_uppercase() {
                let prev = chars[i - 1];
                let next_lower = chars.get(i + 1).map_or(false, |n| n.is_lowercase());
                let boundary = prev.is_lowercase()
                    || prev.is_numeric()
                    || (prev.is_uppercase() && next_lower);
                if boundary && !current.is_empty() {
                    words.push(std::mem::take(&mut current));
                }
            }
            current.push(c);
        }
        if !current.is_empty() {
            words.push(current);
        }
    }
    words
}

fn capitalize(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => {
            let mut s: String = first.to_uppercase().collect();
            s.push_str(&chars.as_str().to_lowercase());
            s
        }
        None => String::new(),
    }
}

fn convert(text: &str, to: &str) -> Result<String, String> {
    let words = split_words(text);
    let lower = || words.iter().map(|w| w.to_lowercase()).collect::<Vec<_>>();
    let upper = || words.iter().map(|w| w.to_uppercase()).collect::<Vec<_>>();
    let caps = || words.iter().map(|w| capitalize(w)).collect::<Vec<_>>();
    Ok(match to {
        "snake" => lower().join("_"),
        "kebab" => lower().join("-"),
        "lower" => lower().join(" "),
        "upper" => upper().join(" "),
        "constant" => upper().join("_"),
        "title" => caps().join(" "),
        "pascal" => caps().join(""),
        "camel" => {
            let mut out = String::new();
            for (i, w) in words.iter().enumerate() {
                if i == 0 {
                    out.push_str(&w.to_lowercase());
                } else {
                    out.push_str(&capitalize(w));
                }
            }
            out
        }
        other => {
            return Err(format!("unknown target case {:?}: \"to\" must be one of: {}", other, TARGETS.join(", ")))
        }
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
    let text = match input.get("text") {
        Some(Value::String(s)) => s,
        Some(_) => fail("\"text\" must be a string"),
        None => fail("missing required field \"text\""),
    };
    let to = match input.get("to") {
        Some(Value::String(s)) => s,
        Some(_) => fail(&format!("\"to\" must be a string, one of: {}", TARGETS.join(", "))),
        None => fail("missing required field \"to\""),
    };
    match convert(text, to) {
        Ok(out) => println!("{}", json!({ "text": out })),
        Err(e) => fail(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitting() {
        assert_eq!(split_words("HTTPServer"), vec!["HTTP", "Server"]);
        assert_eq!(split_words("parseJSONResponse2Fast"), vec!["parse", "JSON", "Response2", "Fast"]);
        assert_eq!(split_words("foo_bar-baz qux"), vec!["foo", "bar", "baz", "qux"]);
        assert_eq!(split_words("  --__ "), Vec::<String>::new());
        assert_eq!(split_words("version2update"), vec!["version2update"]);
    }

    #[test]
    fn all_targets() {
        let t = "userIDNumber";
        assert_eq!(convert(t, "snake").unwrap(), "user_id_number");
        assert_eq!(convert(t, "camel").unwrap(), "userIdNumber");
        assert_eq!(convert(t, "pascal").unwrap(), "UserIdNumber");
        assert_eq!(convert(t, "kebab").unwrap(), "user-id-number");
        assert_eq!(convert(t, "title").unwrap(), "User Id Number");
        assert_eq!(convert(t, "upper").unwrap(), "USER ID NUMBER");
        assert_eq!(convert(t, "lower").unwrap(), "user id number");
        assert_eq!(convert(t, "constant").unwrap(), "USER_ID_NUMBER");
    }

    #[test]
    fn unicode_letters() {
        assert_eq!(convert("ÉcoleÉlémentaire straße", "snake").unwrap(), "école_élémentaire_straße");
        assert_eq!(convert("straße", "constant").unwrap(), "STRASSE");
        assert_eq!(convert("日本語 テキスト", "kebab").unwrap(), "日本語-テキスト");
    }

    #[test]
    fn unknown_target() {
        let e = convert("x", "sponge").unwrap_err();
        assert!(e.contains("snake, camel, pascal"));
    }
}
