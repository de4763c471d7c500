//! roman-numerals: convert integers 1..=3999 to Roman numerals and back (strict canonical form).
use serde_json::{json, Value};
use std::io::Read;
use std::process::exit;

const TABLE: [(u32, &str); 13] = [
    (1000, "M"),
    (900, "CM"),
    (500, "D"),
    (400, "CD"),
    (100, "C"),
    (90, "XC"),
    (50, "L"),
    (40, "XL"),
    (10, "X"),
    (9, "IX"),
    (5, "V"),
    (4, "IV"),
    (1, "I"),
];

/// Canonical Roman numeral for 1..=3999.
fn to_roman(mut n: u32) -> Result<String, String> {
    if !(1..=3999).contains(&n) {
        return Err(format!("number {} is out of range: must be between 1 and 3999", n));
    }
    let mut out = String::new();
    for &(v, s) in TABLE.iter() {
        while n >= v {
            out.push_str(s);
            n -= v;
        }
    }
    Ok(out)
}

fn digit(c: char) -> Option<u32> {
    match c {
        'I' => Some(1),
        'V' => Some(5),
        'X' => Some(10),
        'L' => Some(50),
        'C' => Some(100),
        'D' => Some(500),
        'M' => Some(1000),
        _ => None,
    }
}

/// Parse a Roman numeral (case-insensitive); only the canonical spelling is accepted.
fn from_roman(text: &str) -> Result<(String, u32), String> {
    let upper = text.trim().to_ascii_uppercase();
    if upper.is_empty() {
        return Err("Roman numeral must not be empty".to_string());
    }
    let mut values = Vec::new();
    for c in upper.chars() {
        match digit(c) {
            Some(v) => values.push(v),
            None => return Err(format!("invalid Roman numeral character {:?}", c)),
        }
    }
    // The longest canonical numeral (MMMDCCCLXXXVIII) has 15 letters.
    if values.len() > 15 {
        return Err(format!("{:?} is not a valid canonical Roman numeral", text));
    }
    let mut total: u32 = 0;
    for (i, &v) in values.iter().enumerate() {
        let next = values.get(i + 1).copied().unwrap_or(0);
        if v < next {
            total = total.wrapping_sub(v);
        } else {
            total = total.wrapping_add(v);
        }
    }
    match to_roman(total) {
        Ok(canonical) if canonical == upper => Ok((canonical, total)),
        _ => Err(format!("{:?} is not a valid canonical Roman numeral", text)),
    }
}

fn convert(value: &Value) -> Result<(String, u32), String> {
    match value {
        Value::String(s) => from_roman(s),
        Value::Number(n) => match n.as_i64() {
            Some(i) if (1..=3999).contains(&i) => Ok((to_roman(i as u32)?, i as u32)),
            Some(i) => Err(format!("number {} is out of range: must be between 1 and 3999", i)),
            None => Err(format!("\"value\" must be an integer between 1 and 3999, got {}", n)),
        },
        _ => Err("\"value\" must be an integer or a Roman numeral string".to_string()),
    }
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
    let value = match input.get("value") {
        Some(v) => v,
        None => fail("missing required field \"value\""),
    };
    match convert(value) {
        Ok((roman, n)) => println!("{}", json!({ "roman": roman, "value": n })),
        Err(e) => fail(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_to_roman() {
        assert_eq!(to_roman(1990).unwrap(), "MCMXC");
        assert_eq!(to_roman(4).unwrap(), "IV");
        assert_eq!(to_roman(3999).unwrap(), "MMMCMXCIX");
        assert!(to_roman(0).is_err());
        assert!(to_roman(4000).is_err());
    }

    #[test]
    fn roman_to_integer_case_insensitive() {
        assert_eq!(from_roman("mcmxc").unwrap(), ("MCMXC".to_string(), 1990));
        assert_eq!(from_roman("MMXXIV").unwrap().1, 2024);
    }

    #[test]
    fn round_trip_all() {
        for n in 1..=3999 {
            let r = to_roman(n).unwrap();
            assert_eq!(from_roman(&r).unwrap().1, n);
        }
    }

    #[test]
    fn rejects_non_canonical() {
        for bad in ["IIII", "VX", "IC", "IL", "XM", "VV", "MMMM", "IIX", "", "ABC", "Ⅻ"] {
            assert!(from_roman(bad).is_err(), "{} should be rejected", bad);
        }
    }
}
