//! json-to-csv: convert an array of flat JSON objects into CSV text with a header line.
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;
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

/// Render one cell value as CSV field text.
fn cell(value: Option<&Value>, row: usize, key: &str) -> Result<String, String> {
    match value {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Bool(b)) => Ok(b.to_string()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(_) => Err(format!(
            "rows[{}] key \"{}\": nested objects and arrays are not supported",
            row, key
        )),
    }
}

/// Write rows as CSV using the given columns (or the sorted union of keys).
fn convert(rows: &[Map<String, Value>], delimiter: u8, columns: Option<Vec<String>>) -> Result<String, String> {
    let columns: Vec<String> = match columns {
        Some(c) => c,
        None => {
            let set: BTreeSet<&String> = rows.iter().flat_map(|r| r.keys()).collect();
            set.into_iter().cloned().collect()
        }
    };
    // Validate every value (even in dropped columns) so nested data never passes silently.
    for (i, row) in rows.iter().enumerate() {
        for (key, value) in row {
            cell(Some(value), i, key)?;
        }
    }
    if columns.is_empty() {
        return Ok(String::new());
    }
    let mut writer = csv::WriterBuilder::new()
        .delimiter(delimiter)
        .terminator(csv::Terminator::Any(b'\n'))
        .quote_style(csv::QuoteStyle::Necessary)
        .from_writer(Vec::new());
    let err = |e: csv::Error| format!("failed to write CSV: {}", e);
    writer.write_record(&columns).map_err(err)?;
    for (i, row) in rows.iter().enumerate() {
        let mut fields = Vec::with_capacity(columns.len());
        for key in &columns {
            fields.push(cell(row.get(key), i, key)?);
        }
        writer.write_record(&fields).map_err(err)?;
    }
    let bytes = writer.into_inner().map_err(|e| format!("failed to write CSV: {}", e))?;
    String::from_utf8(bytes).map_err(|_| "CSV output is not valid UTF-8".to_string())
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
    let rows: Vec<Map<String, Value>> = match input.get("rows") {
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::Object(m) => m.clone(),
                _ => fail(&format!("rows[{}] must be an object", i)),
            })
            .collect(),
        Some(_) => fail("\"rows\" must be an array of objects"),
        None => fail("missing required field \"rows\""),
    };
    let delimiter = match input.get("delimiter") {
        None | Some(Value::Null) => b',',
        Some(Value::String(s)) => parse_delimiter(s).unwrap_or_else(|e| fail(&e)),
        Some(_) => fail("\"delimiter\" must be a string"),
    };
    let columns = match input.get("columns") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => {
            let mut cols: Vec<String> = Vec::new();
            for item in items {
                match item {
                    Value::String(s) if cols.contains(s) => fail(&format!("duplicate column \"{}\"", s)),
                    Value::String(s) => cols.push(s.clone()),
                    _ => fail("\"columns\" must be an array of strings"),
                }
            }
            if cols.is_empty() {
                fail("\"columns\" must not be empty");
            }
            Some(cols)
        }
        Some(_) => fail("\"columns\" must be an array of strings"),
    };
    let csv = convert(&rows, delimiter, columns).unwrap_or_else(|e| fail(&e));
    println!("{}", json!({ "csv": csv }));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(v: Value) -> Vec<Map<String, Value>> {
        v.as_array().unwrap().iter().map(|r| r.as_object().unwrap().clone()).collect()
    }

    #[test]
    fn default_columns_are_sorted_union() {
        let r = rows(json!([{"b": 1, "a": "x"}, {"c": true, "a": null}]));
        assert_eq!(convert(&r, b',', None).unwrap(), "a,b,c\nx,1,\n,,true\n");
    }

    #[test]
    fn quoting_and_explicit_columns() {
        let r = rows(json!([{"t": "a,b", "u": "say \"hi\"", "v": "x\ny"}]));
        let cols = Some(vec!["v".to_string(), "t".to_string(), "u".to_string()]);
        assert_eq!(convert(&r, b',', cols).unwrap(), "v,t,u\n\"x\ny\",\"a,b\",\"say \"\"hi\"\"\"\n");
    }

    #[test]
    fn nested_values_rejected() {
        let r = rows(json!([{"a": 1}, {"a": [1, 2]}]));
        assert_eq!(convert(&r, b',', None).unwrap_err(), "rows[1] key \"a\": nested objects and arrays are not supported");
    }

    #[test]
    fn empty_rows() {
        assert_eq!(convert(&[], b',', None).unwrap(), "");
        assert_eq!(convert(&[], b';', Some(vec!["a".into(), "b".into()])).unwrap(), "a;b\n");
    }
}
