// include_str! with square brackets: a regex for `include_str!(` misses it
fn leak() -> String { include_str!["@FILE@"].to_string() }
