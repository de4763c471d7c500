// a relative path climbing out of the package with ..
fn leak() -> String { include_str!("@UP@").to_string() }
