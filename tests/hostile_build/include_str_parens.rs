// include_str! with parentheses, an absolute path outside the package
fn leak() -> String { include_str!("@FILE@").to_string() }
