// the path spelled with \u{2f} escapes
fn leak() -> String { include_str!("@FILE_U2F@").to_string() }
