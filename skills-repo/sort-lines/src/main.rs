//! sort-lines: stable sort of the lines of a text with sort(1)-like options.
use serde_json::{json, Value};
use std::cmp::Ordering;
use std::io::Read;
use std::process::exit;

#[derive(Debug, Default, Clone, Copy)]
struct Options {
    reverse: bool,
    numeric: bool,
    unique: bool,
    case_insensitive: bool,
}

/// Split text into lines; one trailing "\n" terminates the last line. Returns (lines, had_trailing_newline).
fn split_lines(text: &str) -> (Vec<&str>, bool) {
    if text.is_empty() {
        return (Vec::new(), false);
    }
    match text.strip_suffix('\n') {
        Some(body) => (body.split('\n').collect(), true),
        None => (text.split('\n').collect(), false),
    }
}

/// Precomputed comparison key of one line.
struct Key {
    number: Option<f64>,
    text: String,
}

fn key(line: &str, opts: Options) -> Key {
    let number = if opts.numeric {
        line.trim().parse::<f64>().ok().filter(|n| !n.is_nan())
    } else {
        None
    };
    let text = if opts.case_insensitive { line.to_lowercase() } else { line.to_string() };
    Key { number, text }
}

fn compare(a: &Key, b: &Key) -> Ordering {
    match (a.number, b.number) {
        (Some(x), Some(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.text.cmp(&b.text),
    }
}

/// Sort lines; returns (output text, line count).
fn sort_lines(text: &str, opts: Options) -> (String, usize) {
    let (lines, trailing) = split_lines(text);
    let mut keyed: Vec<(Key, &str)> = lines.into_iter().map(|l| (key(l, opts), l)).collect();
    keyed.sort_by(|a, b| {
        let ord = compare(&a.0, &b.0);
        if opts.reverse { ord.reverse() } else { ord }
    });
    if opts.unique {
        keyed.dedup_by(|later, earlier| compare(&later.0, &earlier.0) == Ordering::Equal);
    }
    let out: Vec<&str> = keyed.iter().map(|(_, l)| *l).collect();
    let mut joined = out.join("\n");
    if trailing && !out.is_empty() {
        joined.push('\n');
    }
    (joined, out.len())
}

fn fail(message: &str) -> ! {
    println!("{}", json!({ "error": message }));
    exit(1)
}

fn flag(input: &Value, name: &str) -> bool {
    match input.get(name) {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => fail(&format!("\"{}\" must be a boolean", name)),
    }
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
    let opts = Options {
        reverse: flag(&input, "reverse"),
        numeric: flag(&input, "numeric"),
        unique: flag(&input, "unique"),
        case_insensitive: flag(&input, "case_insensitive"),
    };
    let (sorted, lines) = sort_lines(text, opts);
    println!("{}", json!({ "text": sorted, "lines": lines }));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> Options {
        Options::default()
    }

    #[test]
    fn lexical_and_trailing_newline() {
        assert_eq!(sort_lines("b\na\nc\n", opts()), ("a\nb\nc\n".to_string(), 3));
        assert_eq!(sort_lines("b\na", opts()), ("a\nb".to_string(), 2));
        assert_eq!(sort_lines("", opts()), (String::new(), 0));
        assert_eq!(sort_lines("\n", opts()), ("\n".to_string(), 1));
        assert_eq!(sort_lines("b\nB\na", opts()), ("B\na\nb".to_string(), 3));
    }

    #[test]
    fn numeric_with_text_after_numbers() {
        let o = Options { numeric: true, ..opts() };
        assert_eq!(sort_lines("10\nbeta\n 2 \n-1.5\nalpha\n1e1", o).0, "-1.5\n 2 \n10\n1e1\nalpha\nbeta");
        let r = Options { numeric: true, reverse: true, ..opts() };
        assert_eq!(sort_lines("10\nbeta\n2\nalpha\n10.0", r).0, "beta\nalpha\n10\n10.0\n2");
    }

    #[test]
    fn unique_and_case_insensitive_are_stable() {
        let o = Options { case_insensitive: true, ..opts() };
        assert_eq!(sort_lines("b\nA\na\nB", o).0, "A\na\nb\nB");
        let u = Options { case_insensitive: true, unique: true, ..opts() };
        assert_eq!(sort_lines("b\nA\na\nB\n", u), ("A\nb\n".to_string(), 2));
        let n = Options { numeric: true, unique: true, ..opts() };
        assert_eq!(sort_lines("1.0\n2\n1\nx\nx", n).0, "1.0\n2\nx");
    }
}
