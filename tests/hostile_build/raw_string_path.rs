// the path as a raw string with hashes
fn leak() -> String { include_str!(r#"@FILE@"#).to_string() }
