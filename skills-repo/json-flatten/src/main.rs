//! json-flatten: flatten nested JSON into a map of joined key paths to leaf values.
use serde_json::{json, Map, Value};
use std::io::Read;
use std::process::exit;

fn join(prefix: Option<&str>, key: &str, sep: &str) -> String {
    match prefix {
        None => key.to_string(),
        Some(p) => format!("{}{}{}", p, sep, key),
    }
}

fn insert(out: &mut Map<String, Value>, key: String, value: Value) -> Result<(), String> {
    if out.contains_key(&key) {
        return Err(format!(
            "key collision: the path {:?} is produced more than once; choose a different separator",
            key
        ));
    }
    out.insert(key, value);
    Ok(())
}

/// `prefix` is None at the root so that a root-level key "" differs from the root itself.
fn walk(
    value: &Value,
    prefix: Option<&str>,
    sep: &str,
    arrays: bool,
    out: &mut Map<String, Value>,
) -> Result<(), String> {
    match value {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                let path = join(prefix, k, sep);
                walk(v, Some(&path), sep, arrays, out)?;
            }
            Ok(())
        }
        Value::Array(a) if arrays && !a.is_empty() => {
            for (i, v) in a.iter().enumerate() {
                let path = join(prefix, &i.to_string(), sep);
                walk(v, Some(&path), sep, arrays, out)?;
            }
            Ok(())
        }
        leaf => insert(out, prefix.unwrap_or("").to_string(), leaf.clone()),
    }
}

fn flatten(document: &Value, sep: &str, arrays: bool) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    walk(document, None, sep, arrays, &mut out)?;
    Ok(out)
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
    let sep = match input.get("separator") {
        None => ".",
        Some(Value::String(s)) if s.is_empty() => fail("\"separator\" must not be empty"),
        Some(Value::String(s)) => s.as_str(),
        Some(_) => fail("\"separator\" must be a string"),
    };
    let arrays = match input.get("flatten_arrays") {
        None => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => fail("\"flatten_arrays\" must be a boolean"),
    };
    match flatten(document, sep, arrays) {
        Ok(flat) => {
            let keys = flat.len();
            println!("{}", json!({ "flat": flat, "keys": keys }));
        }
        Err(e) => fail(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_with_arrays() {
        let doc = json!({"a": {"b": 1, "c": [10, {"d": null}]}, "e": "x"});
        let flat = flatten(&doc, ".", true).unwrap();
        assert_eq!(Value::Object(flat), json!({"a.b": 1, "a.c.0": 10, "a.c.1.d": null, "e": "x"}));
    }

    #[test]
    fn arrays_kept_whole_and_custom_separator() {
        let doc = json!({"a": {"b": [1, 2]}});
        let flat = flatten(&doc, "/", false).unwrap();
        assert_eq!(Value::Object(flat), json!({"a/b": [1, 2]}));
    }

    #[test]
    fn empties_and_scalars() {
        assert_eq!(Value::Object(flatten(&json!(5), ".", true).unwrap()), json!({"": 5}));
        assert_eq!(Value::Object(flatten(&json!({}), ".", true).unwrap()), json!({"": {}}));
        assert_eq!(Value::Object(flatten(&json!({"a": [], "b": {}}), ".", true).unwrap()), json!({"a": [], "b": {}}));
        assert_eq!(Value::Object(flatten(&json!({"": {"a": 1}}), ".", true).unwrap()), json!({".a": 1}));
    }

    #[test]
    fn collision_is_error() {
        assert!(flatten(&json!({"a.b": 1, "a": {"b": 2}}), ".", true).is_err());
        assert!(flatten(&json!({"a.b": 1, "a": {"b": 2}}), "_", true).is_ok());
    }
}
