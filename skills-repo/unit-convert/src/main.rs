//! unit-convert: convert lengths, masses and temperatures between units.
use serde_json::{json, Value};
use std::io::Read;
use std::process::exit;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Quantity {
    Length,
    Mass,
    Temperature,
}

impl Quantity {
    fn name(self) -> &'static str {
        match self {
            Quantity::Length => "length",
            Quantity::Mass => "mass",
            Quantity::Temperature => "temperature",
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Unit {
    symbol: &'static str,
    quantity: Quantity,
    /// Size of one unit in the base unit (metre, gram); unused for temperature.
    factor: f64,
}

const UNITS: &[Unit] = &[
    Unit { symbol: "mm", quantity: Quantity::Length, factor: 0.001 },
    Unit { symbol: "cm", quantity: Quantity::Length, factor: 0.01 },
    Unit { symbol: "m", quantity: Quantity::Length, factor: 1.0 },
    Unit { symbol: "km", quantity: Quantity::Length, factor: 1000.0 },
    Unit { symbol: "in", quantity: Quantity::Length, factor: 0.0254 },
    Unit { symbol: "ft", quantity: Quantity::Length, factor: 0.3048 },
    Unit { symbol: "yd", quantity: Quantity::Length, factor: 0.9144 },
    Unit { symbol: "mi", quantity: Quantity::Length, factor: 1609.344 },
    Unit { symbol: "mg", quantity: Quantity::Mass, factor: 0.001 },
    Unit { symbol: "g", quantity: Quantity::Mass, factor: 1.0 },
    Unit { symbol: "kg", quantity: Quantity::Mass, factor: 1000.0 },
    Unit { symbol: "t", quantity: Quantity::Mass, factor: 1_000_000.0 },
    Unit { symbol: "oz", quantity: Quantity::Mass, factor: 28.349523125 },
    Unit { symbol: "lb", quantity: Quantity::Mass, factor: 453.59237 },
    Unit { symbol: "st", quantity: Quantity::Mass, factor: 6350.29318 },
    Unit { symbol: "C", quantity: Quantity::Temperature, factor: 1.0 },
    Unit { symbol: "F", quantity: Quantity::Temperature, factor: 1.0 },
    Unit { symbol: "K", quantity: Quantity::Temperature, factor: 1.0 },
];

fn lookup(symbol: &str) -> Result<Unit, String> {
    UNITS
        .iter()
        .find(|u| u.symbol.eq_ignore_ascii_case(symbol))
        .copied()
        .ok_or_else(|| {
            let known: Vec<&str> = UNITS.iter().map(|u| u.symbol).collect();
            format!("unknown unit {:?}; supported: {}", symbol, known.join(", "))
        })
}

fn round6(x: f64) -> f64 {
    if x.abs() >= 1e15 {
        return x; // already beyond 6-decimal precision of f64
    }
    (x * 1e6).round() / 1e6 + 0.0 // + 0.0 turns -0.0 into 0.0
}

/// Convert a temperature via kelvin, rejecting values below absolute zero.
fn convert_temperature(value: f64, from: &str, to: &str) -> Result<f64, String> {
    let (kelvin, minimum) = match from {
        "C" => (value + 273.15, -273.15),
        "F" => ((value - 32.0) * 5.0 / 9.0 + 273.15, -459.67),
        _ => (value, 0.0),
    };
    if value < minimum {
        return Err(format!("{} {} is below absolute zero ({} {})", value, from, minimum, from));
    }
    let kelvin = kelvin.max(0.0);
    Ok(match to {
        "C" => kelvin - 273.15,
        "F" => (kelvin - 273.15) * 9.0 / 5.0 + 32.0,
        _ => kelvin,
    })
}

/// Returns (rounded value, canonical from, canonical to, quantity name).
fn convert(value: f64, from: &str, to: &str) -> Result<(f64, &'static str, &'static str, &'static str), String> {
    let f = lookup(from)?;
    let t = lookup(to)?;
    if f.quantity != t.quantity {
        return Err(format!(
            "cannot convert {} ({}) to {} ({})",
            f.quantity.name(),
            f.symbol,
            t.quantity.name(),
            t.symbol
        ));
    }
    let result = if f.quantity == Quantity::Temperature {
        convert_temperature(value, f.symbol, t.symbol)?
    } else {
        value * f.factor / t.factor
    };
    if !result.is_finite() {
        return Err("result is out of range".to_string());
    }
    Ok((round6(result), f.symbol, t.symbol, f.quantity.name()))
}

fn fail(message: &str) -> ! {
    println!("{}", json!({ "error": message }));
    exit(1)
}

fn unit_field<'a>(input: &'a Value, name: &str) -> &'a str {
    match input.get(name) {
        Some(Value::String(s)) => s,
        Some(_) => fail(&format!("\"{}\" must be a string", name)),
        None => fail(&format!("missing required field \"{}\"", name)),
    }
}

fn main() {
    let mut raw = String::new();
    if std::io::stdin().read_to_string(&mut raw).is_err() {
        fail("input is not valid UTF-8");
    }
    let input: Value = serde_json::from_str(&raw).unwrap_or_else(|e| fail(&format!("input is not valid JSON: {}", e)));
    let value = match input.get("value") {
        Some(Value::Number(n)) => n.as_f64().unwrap_or_else(|| fail("\"value\" must be a number")),
        Some(_) => fail("\"value\" must be a number"),
        None => fail("missing required field \"value\""),
    };
    let from = unit_field(&input, "from");
    let to = unit_field(&input, "to");
    match convert(value, from, to) {
        Ok((v, f, t, q)) => println!("{}", json!({ "value": v, "from": f, "to": t, "quantity": q })),
        Err(e) => fail(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn val(value: f64, from: &str, to: &str) -> f64 {
        convert(value, from, to).unwrap().0
    }

    #[test]
    fn length_and_mass() {
        assert_eq!(val(1.0, "mi", "km"), 1.609344);
        assert_eq!(val(12.0, "in", "ft"), 1.0);
        assert_eq!(val(1.0, "kg", "lb"), 2.204623);
        assert_eq!(val(1.0, "st", "lb"), 14.0);
        assert_eq!(val(2500.0, "MG", "g"), 2.5);
        assert_eq!(convert(1.0, "t", "KG").unwrap(), (1000.0, "t", "kg", "mass"));
    }

    #[test]
    fn temperature() {
        assert_eq!(val(100.0, "C", "F"), 212.0);
        assert_eq!(val(-40.0, "F", "C"), -40.0);
        assert_eq!(val(0.0, "K", "C"), -273.15);
        assert_eq!(val(-459.67, "F", "K"), 0.0);
        assert_eq!(val(98.6, "f", "c"), 37.0);
        assert!(convert(-273.16, "C", "K").is_err());
        assert!(convert(-1.0, "K", "C").is_err());
    }

    #[test]
    fn errors() {
        assert_eq!(convert(1.0, "m", "kg").unwrap_err(), "cannot convert length (m) to mass (kg)");
        assert!(convert(1.0, "parsec", "m").unwrap_err().starts_with("unknown unit \"parsec\""));
        assert!(convert(1e308, "mi", "mm").is_err());
        assert_eq!(round6(-0.0000001), 0.0);
    }
}
