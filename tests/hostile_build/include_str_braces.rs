// include_str! with braces
fn leak() -> String { let s: &str = include_str!{"@FILE@"}; s.to_string() }
