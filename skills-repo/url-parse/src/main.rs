//! url-parse: split an absolute URL into its components.
use serde_json::{json, Map, Value};
use std::io::Read;
use std::process::exit;
use url::Url;

/// Decode the query string into an object; repeated keys become arrays of values in order.
fn query_object(url: &Url) -> Map<String, Value> {
    let mut map = Map::new();
    for (key, value) in url.query_pairs() {
        let value = Value::String(value.into_owned());
        match map.get_mut(&*key) {
            Some(Value::Array(items)) => items.push(value),
            Some(existing) => {
                let first = existing.take();
                *existing = Value::Array(vec![first, value]);
            }
            None => {
                map.insert(key.into_owned(), value);
            }
        }
    }
    map
}

fn parse(text: &str) -> Result<Value, String> {
    let url = Url::parse(text).map_err(|e| format!("invalid URL: {}", e))?;
    Ok(json!({
        "scheme": url.scheme(),
        "host": url.host_str(),
        "port": url.port_or_known_default(),
        "path": url.path(),
        "query": Value::Object(query_object(&url)),
        "fragment": url.fragment(),
        "username": url.username(),
    }))
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
    let text = match input.get("url") {
        Some(Value::String(s)) => s,
        Some(_) => fail("\"url\" must be a string"),
        None => fail("missing required field \"url\""),
    };
    match parse(text) {
        Ok(out) => println!("{}", out),
        Err(e) => fail(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_url() {
        let v = parse("https://bob@Example.COM:8443/a/b?x=1&y=two+words#frag").unwrap();
        assert_eq!(v["scheme"], "https");
        assert_eq!(v["host"], "example.com");
        assert_eq!(v["port"], 8443);
        assert_eq!(v["path"], "/a/b");
        assert_eq!(v["query"], json!({"x": "1", "y": "two words"}));
        assert_eq!(v["fragment"], "frag");
        assert_eq!(v["username"], "bob");
    }

    #[test]
    fn default_port_and_repeated_keys() {
        let v = parse("http://example.com?a=1&a=2&a=3&b=%C3%A9").unwrap();
        assert_eq!(v["port"], 80);
        assert_eq!(v["path"], "/");
        assert_eq!(v["query"], json!({"a": ["1", "2", "3"], "b": "é"}));
        assert_eq!(v["fragment"], Value::Null);
        assert_eq!(v["username"], "");
    }

    #[test]
    fn no_host_and_errors() {
        let v = parse("mailto:someone@example.com").unwrap();
        assert_eq!(v["host"], Value::Null);
        assert_eq!(v["port"], Value::Null);
        assert_eq!(parse("/relative/path").unwrap_err(), "invalid URL: relative URL without a base");
        assert!(parse("http://exa mple.com").is_err());
    }
}
