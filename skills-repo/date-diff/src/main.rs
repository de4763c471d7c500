//! date-diff: signed day difference between two calendar dates.
use chrono::NaiveDate;
use serde_json::{json, Value};
use std::io::Read;
use std::process::exit;

#[derive(Debug, PartialEq)]
struct Diff {
    days: i64,
    weeks: i64,
    remaining_days: i64,
    absolute_days: i64,
}

/// Parse a strict YYYY-MM-DD date; `field` names the input field in error messages.
fn parse_date(field: &str, s: &str) -> Result<NaiveDate, String> {
    let b = s.as_bytes();
    let shape_ok = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter().enumerate().all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !shape_ok {
        return Err(format!("\"{}\" must be a date in YYYY-MM-DD format, got {:?}", field, s));
    }
    // All ten bytes are ASCII, so these slices and parses cannot fail.
    let year: i32 = s[0..4].parse().unwrap_or(0);
    let month: u32 = s[5..7].parse().unwrap_or(0);
    let day: u32 = s[8..10].parse().unwrap_or(0);
    NaiveDate::from_ymd_opt(year, month, day)
        .ok_or_else(|| format!("\"{}\" is not a valid calendar date: {:?}", field, s))
}

fn diff(start: NaiveDate, end: NaiveDate) -> Diff {
    let days = end.signed_duration_since(start).num_days();
    Diff { days, weeks: days / 7, remaining_days: days % 7, absolute_days: days.abs() }
}

fn fail(message: &str) -> ! {
    println!("{}", json!({ "error": message }));
    exit(1)
}

fn date_field(input: &Value, field: &str) -> NaiveDate {
    match input.get(field) {
        Some(Value::String(s)) => parse_date(field, s).unwrap_or_else(|e| fail(&e)),
        Some(_) => fail(&format!("\"{}\" must be a string", field)),
        None => fail(&format!("missing required field \"{}\"", field)),
    }
}

fn main() {
    let mut raw = String::new();
    if std::io::stdin().read_to_string(&mut raw).is_err() {
        fail("input is not valid UTF-8");
    }
    let input: Value = serde_json::from_str(&raw).unwrap_or_else(|e| fail(&format!("input is not valid JSON: {}", e)));
    let start = date_field(&input, "start");
    let end = date_field(&input, "end");
    let d = diff(start, end);
    println!(
        "{}",
        json!({ "days": d.days, "weeks": d.weeks, "remaining_days": d.remaining_days, "absolute_days": d.absolute_days })
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn between(a: &str, b: &str) -> Diff {
        diff(parse_date("start", a).unwrap(), parse_date("end", b).unwrap())
    }

    #[test]
    fn forward_and_backward() {
        assert_eq!(between("2024-01-01", "2024-01-17"), Diff { days: 16, weeks: 2, remaining_days: 2, absolute_days: 16 });
        assert_eq!(between("2024-01-17", "2024-01-01"), Diff { days: -16, weeks: -2, remaining_days: -2, absolute_days: 16 });
        assert_eq!(between("2024-05-05", "2024-05-05"), Diff { days: 0, weeks: 0, remaining_days: 0, absolute_days: 0 });
    }

    #[test]
    fn leap_years() {
        assert_eq!(between("2024-02-28", "2024-03-01").days, 2);
        assert_eq!(between("2023-02-28", "2023-03-01").days, 1);
        assert_eq!(between("2000-01-01", "2001-01-01").days, 366);
        assert_eq!(between("1900-01-01", "1901-01-01").days, 365);
    }

    #[test]
    fn invalid_dates() {
        assert_eq!(parse_date("start", "2023-02-30").unwrap_err(), "\"start\" is not a valid calendar date: \"2023-02-30\"");
        assert!(parse_date("end", "2023-2-3").is_err());
        assert!(parse_date("end", "2023-13-01").is_err());
        assert!(parse_date("end", "２０２３-01-01").is_err());
        assert!(parse_date("end", "").is_err());
    }
}
