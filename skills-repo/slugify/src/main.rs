//! slugify: turn text into a lowercase ASCII URL slug.
use serde_json::{json, Value};
use std::io::Read;
use std::process::exit;

/// ASCII replacement for common (already lowercased) Latin letters with diacritics and ligatures.
fn transliterate(c: char) -> Option<&'static str> {
    let s = match c {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ă' | 'ą' | 'ǎ' | 'ª' => "a",
        'æ' => "ae",
        'ç' | 'ć' | 'ĉ' | 'ċ' | 'č' => "c",
        'ď' | 'đ' | 'ð' => "d",
        'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ĕ' | 'ė' | 'ę' | 'ě' => "e",
        'ĝ' | 'ğ' | 'ġ' | 'ģ' => "g",
        'ĥ' | 'ħ' => "h",
        'ì' | 'í' | 'î' | 'ï' | 'ĩ' | 'ī' | 'ĭ' | 'į' | 'ı' | 'ǐ' => "i",
        'ĳ' => "ij",
        'ĵ' => "j",
        'ķ' => "k",
        'ĺ' | 'ļ' | 'ľ' | 'ŀ' | 'ł' => "l",
        'ñ' | 'ń' | 'ņ' | 'ň' | 'ŉ' => "n",
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' | 'ŏ' | 'ő' | 'ǒ' | 'º' => "o",
        'œ' => "oe",
        'ŕ' | 'ŗ' | 'ř' => "r",
        'ś' | 'ŝ' | 'ş' | 'š' | 'ș' | 'ſ' => "s",
        'ß' => "ss",
        'ţ' | 'ť' | 'ŧ' | 'ț' => "t",
        'þ' => "th",
        'ù' | 'ú' | 'û' | 'ü' | 'ũ' | 'ū' | 'ŭ' | 'ů' | 'ű' | 'ų' | 'ǔ' => "u",
        'ŵ' => "w",
        'ý' | 'ÿ' | 'ŷ' => "y",
        'ź' | 'ż' | 'ž' => "z",
        _ => return None,
    };
    Some(s)
}

/// Split text into lowercase ASCII alphanumeric words after transliteration.
fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for c in text.chars().flat_map(char::to_lowercase) {
        if ('\u{0300}'..='\u{036F}').contains(&c) {
            continue; // combining diacritical mark: drop without splitting the word
        }
        if c.is_ascii_alphanumeric() {
            current.push(c);
        } else if let Some(rep) = transliterate(c) {
            current.push_str(rep);
        } else if !current.is_empty() {
            out.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Join words with the separator, truncating to at most `max_length` characters
/// without leaving a trailing (or partial) separator.
fn slugify(text: &str, separator: &str, max_length: Option<usize>) -> String {
    let limit = max_length.unwrap_or(usize::MAX);
    let sep_len = separator.chars().count();
    let mut slug = String::new();
    let mut len = 0usize;
    for (i, word) in words(text).iter().enumerate() {
        if i > 0 {
            // A separator is only worth adding if at least one word character fits after it.
            if len.saturating_add(sep_len).saturating_add(1) > limit {
                break;
            }
            slug.push_str(separator);
            len += sep_len;
        }
        let room = limit - len;
        if word.len() <= room {
            slug.push_str(word);
            len += word.len();
        } else {
            slug.push_str(&word[..room]); // words are ASCII, so byte slicing is safe
            break;
        }
    }
    slug
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
    let separator = match input.get("separator") {
        None | Some(Value::Null) => "-",
        Some(Value::String(s)) => s.as_str(),
        Some(_) => fail("\"separator\" must be a string"),
    };
    let max_length = match input.get("max_length") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(n) => Some(usize::try_from(n).unwrap_or(usize::MAX)),
            None => fail("\"max_length\" must be a non-negative integer"),
        },
    };
    println!("{}", json!({ "slug": slugify(text, separator, max_length) }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_and_transliteration() {
        assert_eq!(slugify("Hello, World!", "-", None), "hello-world");
        assert_eq!(slugify("Crème Brûlée à la Straße", "-", None), "creme-brulee-a-la-strasse");
        assert_eq!(slugify("Æsir Øresund ŒUVRE", "-", None), "aesir-oresund-oeuvre");
        assert_eq!(slugify("Cafe\u{0301} İstanbul", "-", None), "cafe-istanbul");
    }

    #[test]
    fn separators_collapse_and_trim() {
        assert_eq!(slugify("  --a  b__c--  ", "_", None), "a_b_c");
        assert_eq!(slugify("日本語 text", "-", None), "text");
        assert_eq!(slugify("a b", "", None), "ab");
        assert_eq!(slugify("!!!", "-", None), "");
    }

    #[test]
    fn truncation_never_ends_with_separator() {
        assert_eq!(slugify("hello world", "-", Some(6)), "hello");
        assert_eq!(slugify("hello world", "-", Some(7)), "hello-w");
        assert_eq!(slugify("hello world", "--", Some(7)), "hello");
        assert_eq!(slugify("hello world", "-", Some(3)), "hel");
        assert_eq!(slugify("hello world", "-", Some(0)), "");
    }
}
