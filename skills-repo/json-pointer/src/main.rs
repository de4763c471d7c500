//! json-pointer: resolve an RFC 6901 JSON Pointer against a JSON document.
use serde_json::{json, Value};
use std::io::Read;
use std::process::exit;

/// Split a pointer into unescaped reference tokens, rejecting malformed pointers.
fn parse_pointer(pointer: &str) -> Result<Vec<String>, String> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    if !pointer.starts_with('/') {
        return Err(format!("invalid pointer {:?}: must be empty or start with \"/\"", pointer));
    }
    let mut tokens = Vec::new();
    for raw in pointer[1..].split('/') {
        let mut token = String::with_capacity(raw.len());
        let mut chars = raw.chars();
        while let Some(c) = chars.next() {
            if c == '~' {
                match chars.next() {
                    Some('0') => token.push('~'),
                    Some('1') => token.push('/'),
                    _ => return Err(format!("invalid pointer {:?}: \"~\" must be followed by 0 or 1", pointer)),
                }
            } else {
                token.push(c);
            }
        }
        tokens.push(token);
    }
    Ok(tokens)
}

/// Parse an array index token: "0" or digits without a leading zero.
fn array_index(token: &str) -> Option<usize> {
    let valid = !token.is_empty()
        && token.bytes().all(|b| b.is_ascii_digit())
        && (token == "0" || !token.starts_with('0'));
    if valid {
        token.parse().ok()
    } else {
        None
    }
}

fn resolve<'a>(document: &'a Value, tokens: &[String]) -> Option<&'a Value> {
    let mut current = document;
    for token in tokens {
        current = match current {
            Value::Object(map) => map.get(token)?,
            Value::Array(items) => items.get(array_index(token)?)?,
            _ => return None,
        };
    }
    Some(current)
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
    let document = match input.get("document") {
        Some(v) => v,
        None => fail("missing required field \"document\""),
    };
    let pointer = match input.get("pointer") {
        Some(Value::String(s)) => s,
        Some(_) => fail("\"pointer\" must be a string"),
        None => fail("missing required field \"pointer\""),
    };
    let tokens = parse_pointer(pointer).unwrap_or_else(|e| fail(&e));
    let out = match resolve(document, &tokens) {
        Some(v) => json!({ "found": true, "value": v }),
        None => json!({ "found": false, "value": null }),
    };
    println!("{}", out);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(doc: &Value, pointer: &str) -> Option<Value> {
        resolve(doc, &parse_pointer(pointer).unwrap()).cloned()
    }

    #[test]
    fn rfc6901_examples() {
        let doc = json!({"foo": ["bar", "baz"], "": 0, "a/b": 1, "c%d": 2, "e^f": 3, "g|h": 4,
                         "i\\j": 5, "k\"l": 6, " ": 7, "m~n": 8});
        assert_eq!(lookup(&doc, ""), Some(doc.clone()));
        assert_eq!(lookup(&doc, "/foo"), Some(json!(["bar", "baz"])));
        assert_eq!(lookup(&doc, "/foo/0"), Some(json!("bar")));
        assert_eq!(lookup(&doc, "/"), Some(json!(0)));
        assert_eq!(lookup(&doc, "/a~1b"), Some(json!(1)));
        assert_eq!(lookup(&doc, "/ "), Some(json!(7)));
        assert_eq!(lookup(&doc, "/m~0n"), Some(json!(8)));
    }

    #[test]
    fn unresolvable() {
        let doc = json!({"a": [1, 2, {"b": null}], "s": "str"});
        assert_eq!(lookup(&doc, "/a/2/b"), Some(Value::Null));
        assert_eq!(lookup(&doc, "/a/3"), None);
        assert_eq!(lookup(&doc, "/a/-"), None);
        assert_eq!(lookup(&doc, "/a/01"), None);
        assert_eq!(lookup(&doc, "/a/+1"), None);
        assert_eq!(lookup(&doc, "/a/99999999999999999999999"), None);
        assert_eq!(lookup(&doc, "/s/0"), None);
        assert_eq!(lookup(&doc, "/missing"), None);
    }

    #[test]
    fn malformed_pointers() {
        assert!(parse_pointer("foo").is_err());
        assert!(parse_pointer("/a~2").is_err());
        assert!(parse_pointer("/a~").is_err());
        assert_eq!(parse_pointer("/~01").unwrap(), vec!["~1".to_string()]);
        assert_eq!(parse_pointer("//").unwrap(), vec![String::new(), String::new()]);
    }
}
