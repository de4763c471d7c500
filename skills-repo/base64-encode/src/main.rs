//! base64-encode: Base64-encode the UTF-8 bytes of a text.
use serde_json::{json, Value};
use std::io::Read;
use std::process::exit;

fn encode(text: &str, url_safe: bool, padding: bool) -> String {
    let config = match (url_safe, padding) {
        (false, true) => base64::STANDARD,
        (false, false) => base64::STANDARD_NO_PAD,
        (true, true) => base64::URL_SAFE,
        (true, false) => base64::URL_SAFE_NO_PAD,
    };
    base64::encode_config(text.as_bytes(), config)
}

fn fail(message: &str) -> ! {
    println!("{}", json!({ "error": message }));
    exit(1)
}

fn get_bool(input: &Value, field: &str, default: bool) -> bool {
    match input.get(field) {
        None | Some(Value::Null) => default,
        Some(Value::Bool(b)) => *b,
        Some(_) => fail(&format!("\"{}\" must be a boolean", field)),
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
    let text = match input.get("text") {
        Some(Value::String(s)) => s,
        Some(_) => fail("\"text\" must be a string"),
        None => fail("missing required field \"text\""),
    };
    let url_safe = get_bool(&input, "url_safe", false);
    let padding = get_bool(&input, "padding", true);
    println!("{}", json!({ "base64": encode(text, url_safe, padding) }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4648_vectors() {
        let cases = [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("fooba", "Zm9vYmE="), ("foobar", "Zm9vYmFy")];
        for (plain, enc) in cases.iter() {
            assert_eq!(encode(plain, false, true), *enc);
        }
    }

    #[test]
    fn no_padding() {
        assert_eq!(encode("f", false, false), "Zg");
        assert_eq!(encode("fo", true, false), "Zm8");
    }

    #[test]
    fn url_safe_alphabet() {
        // "??>" / "???" produce 6-bit groups 62 and 63, i.e. + and / in the standard alphabet
        assert_eq!(encode("??>", false, true), "Pz8+");
        assert_eq!(encode("??>", true, true), "Pz8-");
        assert_eq!(encode("???", false, true), "Pz8/");
        assert_eq!(encode("???", true, true), "Pz8_");
    }
}
