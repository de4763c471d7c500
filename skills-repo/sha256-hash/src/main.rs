//! sha256-hash: SHA-256 digest (lowercase hex) of the UTF-8 bytes of a text.
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::process::exit;

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
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
    println!("{}", json!({ "sha256": sha256_hex(text), "bytes": text.len() }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_string() {
        assert_eq!(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }

    #[test]
    fn nist_abc_vector() {
        assert_eq!(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn long_two_block_vector() {
        assert_eq!(
            sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
    }
}
