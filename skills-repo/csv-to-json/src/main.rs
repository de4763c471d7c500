//! csv-to-json: parse CSV text into an array of JSON rows (objects keyed by header, or arrays).
use serde_json::{json, Map, Value};
use std::io::Read;
use std::process::exit;

/// Parse the delimiter option: exactly one ASCII character, not a quote or line break.
fn parse_delimiter(s: &str) -> Result<u8, String> {
    let mut chars = s.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) if c.is_ascii() && c != '"' && c != '\n' && c != '\r' => Ok(c as u8),
        (Some(c), None) if c.is_ascii() => {
            Err("\"delimiter\" must not be a double quote, \\r or \\n".to_string())
        }
        _ => Err("\"delimiter\" must be a single ASCII character".to_string()),
    }
}

/// Convert CSV text into JSON rows.
fn convert(text: &str, delimiter: u8, header: bool) -> Result<Vec<Value>, String> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut names: Option<Vec<String>> = None;
    let mut expected: Option<usize> = None;
    let mut rows = Vec::new();
    for result in reader.records() {
        let record = result.map_err(|e| format!("invalid CSV: {}", e))?;
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        match expected {
            None => expected = Some(record.len()),
            Some(n) if n != record.len() => {
                return Err(format!(
                    "CSV record on line {} has {} fields, expected {}",
                    line,
                    record.len(),
                    n
                ))
            }
            _ => {}
        }
        let fields: Vec<String> = record.iter().map(|f| f.to_string()).collect();
        if header {
            match &names {
                None => {
                    for (i, name) in fields.iter().enumerate() {
                        if fields[..i].contains(name) {
                            return Err(format!("duplicate header name \"{}\"", name));
                        }
                    }
                    names = Some(fields);
                }
                Some(names) => {
                    let mut obj = Map::new();
                    for (name, value) in names.iter().zip(fields) {
                        obj.insert(name.clone(), Value::String(value));
                    }
                    rows.push(Value::Object(obj));
                }
            }
        } else {
            rows.push(Value::Array(fields.into_iter().map(Value::String).collect()));
        }
    }
    Ok(rows)
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
    let text = match input.get("csv") {
        Some(Value::String(s)) => s,
        Some(_) => fail("\"csv\" must be a string"),
        None => fail("missing required field \"csv\""),
    };
    let delimiter = match input.get("delimiter") {
        None | Some(Value::Null) => b',',
        Some(Value::String(s)) => parse_delimiter(s).unwrap_or_else(|e| fail(&e)),
        Some(_) => fail("\"delimiter\" must be a string"),
    };
    let header = match input.get("header") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => fail("\"header\" must be a boolean"),
    };
    let rows = convert(text, delimiter, header).unwrap_or_else(|e| fail(&e));
    let count = rows.len();
    println!("{}", json!({ "rows": rows, "count": count }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_rows_become_objects() {
        let rows = convert("a,b\n1,2\n\"x,y\",\"he said \"\"hi\"\"\"\n", b',', true).unwrap();
        assert_eq!(rows, vec![json!({"a": "1", "b": "2"}), json!({"a": "x,y", "b": "he said \"hi\""})]);
    }

    #[test]
    fn no_header_rows_become_arrays() {
        let rows = convert("a;b\r\n1;2", b';', false).unwrap();
        assert_eq!(rows, vec![json!(["a", "b"]), json!(["1", "2"])]);
        assert!(convert("", b',', false).unwrap().is_empty());
    }

    #[test]
    fn ragged_and_duplicate_rejected() {
        assert_eq!(convert("a,b\n1\n", b',', true).unwrap_err(), "CSV record on line 2 has 1 fields, expected 2");
        assert_eq!(convert("a,a\n1,2\n", b',', true).unwrap_err(), "duplicate header name \"a\"");
    }

    #[test]
    fn delimiter_validation() {
        assert_eq!(parse_delimiter("\t"), Ok(b'\t'));
        assert!(parse_delimiter(";;").is_err());
        assert!(parse_delimiter("").is_err());
        assert!(parse_delimiter("é").is_err());
        assert!(parse_delimiter("\"").is_err());
    }
}
