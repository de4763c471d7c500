//! base64-decode: decode Base64 (standard or URL-safe, padding optional) into UTF-8 text.
use serde_json::{json, Value};
use std::io::Read;
use std::process::exit;

/// Name the character starting at byte `offset` of `s` (falling back to the raw byte).
fn describe_char(s: &str, offset: usize, byte: u8) -> String {
    match s.get(offset..).and_then(|rest| rest.chars().next()) {
        Some(c) if !c.is_control() => format!("'{}'", c),
        Some(c) => format!("U+{:04X}", c as u32),
        None => format!("byte 0x{:02x}", byte),
    }
}

/// Decode Base64 text (whitespace ignored, padding optional) into a UTF-8 string.
fn decode(input: &str, url_safe: bool) -> Result<String, String> {
    let cleaned: String = input.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let config = if url_safe { base64::URL_SAFE } else { base64::STANDARD };
    let bytes = base64::decode_config(&cleaned, config).map_err(|e| match e {
        base64::DecodeError::InvalidByte(offset, b'=') => {
            format!("invalid base64: misplaced padding at offset {}", offset)
        }
        base64::DecodeError::InvalidByte(offset, byte) => {
            let hint = match (url_safe, byte) {
                (false, b'-') | (false, b'_') => " (set url_safe to true for the URL-safe alphabet)",
                (true, b'+') | (true, b'/') => " (set url_safe to false for the standard alphabet)",
                _ => "",
            };
            format!("invalid base64: invalid character {} at offset {}{}", describe_char(&cleaned, offset, byte), offset, hint)
        }
        base64::DecodeError::InvalidLength => "invalid base64: invalid length".to_string(),
        base64::DecodeError::InvalidLastSymbol(offset, byte) => format!(
            "invalid base64: invalid last character {} at offset {} (non-zero trailing bits)",
            describe_char(&cleaned, offset, byte),
            offset
        ),
    })?;
    String::from_utf8(bytes).map_err(|_| "decoded bytes are not valid UTF-8 text".to_string())
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
    let encoded = match input.get("base64") {
        Some(Value::String(s)) => s,
        Some(_) => fail("\"base64\" must be a string"),
        None => fail("missing required field \"base64\""),
    };
    let url_safe = match input.get("url_safe") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => fail("\"url_safe\" must be a boolean"),
    };
    let text = decode(encoded, url_safe).unwrap_or_else(|e| fail(&e));
    println!("{}", json!({ "text": text }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4648_vectors_with_and_without_padding() {
        let cases = [("", ""), ("Zg==", "f"), ("Zm8=", "fo"), ("Zm9v", "foo"), ("Zm9vYmE=", "fooba")];
        for (enc, plain) in cases.iter() {
            assert_eq!(decode(enc, false).unwrap(), *plain);
            assert_eq!(decode(enc.trim_end_matches('='), false).unwrap(), *plain);
        }
    }

    #[test]
    fn alphabets_and_whitespace() {
        assert_eq!(decode("Pz8/\nPj4+", false).unwrap(), "???>>>");
        assert_eq!(decode("Pz8_Pj4-", true).unwrap(), "???>>>");
        assert!(decode("Pz8_Pj4-", false).unwrap_err().contains("url_safe"));
    }

    #[test]
    fn errors() {
        assert_eq!(decode("Zm9v!", false).unwrap_err(), "invalid base64: invalid character '!' at offset 4");
        assert_eq!(decode("Z", false).unwrap_err(), "invalid base64: invalid length");
        assert_eq!(decode("Zm9vé", false).unwrap_err(), "invalid base64: invalid character 'é' at offset 4");
        assert_eq!(decode("==", false).unwrap_err(), "invalid base64: misplaced padding at offset 0");
        assert_eq!(decode("/w==", false).unwrap_err(), "decoded bytes are not valid UTF-8 text");
    }
}
