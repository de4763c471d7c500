//! markdown-table: render an array of JSON objects as a GitHub-flavoured Markdown table.
use serde_json::{json, Map, Value};
use std::io::Read;
use std::process::exit;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Align {
    Default,
    Left,
    Center,
    Right,
}

/// Default column order: first row's keys sorted, then new keys of each later row sorted.
fn default_columns(rows: &[&Map<String, Value>]) -> Vec<String> {
    let mut columns: Vec<String> = Vec::new();
    for row in rows {
        // serde_json maps iterate in sorted key order.
        for key in row.keys() {
            if !columns.iter().any(|c| c == key) {
                columns.push(key.clone());
            }
        }
    }
    columns
}

fn escape(text: &str) -> String {
    text.replace('|', "\\|").replace("\r\n", "<br>").replace('\n', "<br>").replace('\r', "<br>")
}

fn cell(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => escape(s),
        Some(other) => escape(&other.to_string()),
    }
}

fn line(cells: &[String]) -> String {
    format!("| {} |", cells.join(" | "))
}

fn render(rows: &[&Map<String, Value>], columns: &[String], aligns: &[Align]) -> String {
    let mut lines = Vec::with_capacity(rows.len() + 2);
    let header: Vec<String> = columns.iter().map(|c| escape(c)).collect();
    lines.push(line(&header));
    let sep: Vec<String> = aligns
        .iter()
        .map(|a| {
            match a {
                Align::Default => "---",
                Align::Left => ":---",
                Align::Center => ":---:",
                Align::Right => "---:",
            }
            .to_string()
        })
        .collect();
    lines.push(line(&sep));
    for row in rows {
        let cells: Vec<String> = columns.iter().map(|c| cell(row.get(c))).collect();
        lines.push(line(&cells));
    }
    lines.join("\n")
}

fn fail(message: &str) -> ! {
    println!("{}", json!({ "error": message }));
    exit(1)
}

fn run(input: &Value) -> Result<Value, String> {
    let rows_value = match input.get("rows") {
        Some(Value::Array(a)) => a,
        Some(_) => return Err("\"rows\" must be an array of objects".to_string()),
        None => return Err("missing required field \"rows\"".to_string()),
    };
    let mut rows = Vec::with_capacity(rows_value.len());
    for (i, r) in rows_value.iter().enumerate() {
        match r {
            Value::Object(m) => rows.push(m),
            _ => return Err(format!("\"rows\"[{}] must be an object", i)),
        }
    }
    let columns: Vec<String> = match input.get("columns") {
        None => default_columns(&rows),
        Some(Value::Array(a)) => {
            let mut cols = Vec::with_capacity(a.len());
            for (i, c) in a.iter().enumerate() {
                match c {
                    Value::String(s) => {
                        if cols.contains(s) {
                            return Err(format!("duplicate column {:?} in \"columns\"", s));
                        }
                        cols.push(s.clone());
                    }
                    _ => return Err(format!("\"columns\"[{}] must be a string", i)),
                }
            }
            if cols.is_empty() {
                return Err("\"columns\" must not be empty".to_string());
            }
            cols
        }
        Some(_) => return Err("\"columns\" must be an array of strings".to_string()),
    };
    if columns.is_empty() {
        return Err("no columns: \"rows\" has no keys and \"columns\" was not given".to_string());
    }
    let mut aligns = vec![Align::Default; columns.len()];
    match input.get("align") {
        None => {}
        Some(Value::Object(m)) => {
            for (name, a) in m {
                let idx = match columns.iter().position(|c| c == name) {
                    Some(i) => i,
                    None => return Err(format!("\"align\" refers to unknown column {:?}", name)),
                };
                aligns[idx] = match a.as_str() {
                    Some("left") => Align::Left,
                    Some("center") => Align::Center,
                    Some("right") => Align::Right,
                    _ => {
                        return Err(format!(
                            "\"align\" value for column {:?} must be one of: left, center, right",
                            name
                        ))
                    }
                };
            }
        }
        Some(_) => return Err("\"align\" must be an object mapping column names to alignments".to_string()),
    }
    let markdown = render(&rows, &columns, &aligns);
    Ok(json!({ "markdown": markdown, "rows": rows.len(), "columns": columns.len() }))
}

fn main() {
    let mut raw = String::new();
    if std::io::stdin().read_to_string(&mut raw).is_err() {
        fail("input is not valid UTF-8");
    }
    let input: Value = serde_json::from_str(&raw).unwrap_or_else(|e| fail(&format!("input is not valid JSON: {}", e)));
    match run(&input) {
        Ok(out) => println!("{}", out),
        Err(e) => fail(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn default_column_order() {
        let a = obj(json!({"b": 1, "a": 2}));
        let b = obj(json!({"z": 1, "c": 2, "a": 3}));
        assert_eq!(default_columns(&[&a, &b]), vec!["a", "b", "c", "z"]);
    }

    #[test]
    fn cell_formatting() {
        assert_eq!(cell(None), "");
        assert_eq!(cell(Some(&Value::Null)), "");
        assert_eq!(cell(Some(&json!("a|b\nc"))), "a\\|b<br>c");
        assert_eq!(cell(Some(&json!(1.5))), "1.5");
        assert_eq!(cell(Some(&json!(true))), "true");
        assert_eq!(cell(Some(&json!([1, "x"]))), "[1,\"x\"]");
    }

    #[test]
    fn renders_with_alignment() {
        let r = obj(json!({"n": 1, "s": "x"}));
        let md = render(&[&r], &["s".to_string(), "n".to_string()], &[Align::Left, Align::Right]);
        assert_eq!(md, "| s | n |\n| :--- | ---: |\n| x | 1 |");
    }

    #[test]
    fn errors() {
        assert!(run(&json!({"rows": []})).is_err());
        assert!(run(&json!({"rows": [1]})).is_err());
        assert!(run(&json!({"rows": [{"a": 1}], "align": {"a": "middle"}})).is_err());
        assert!(run(&json!({"rows": [], "columns": ["a"]})).is_ok());
    }
}
