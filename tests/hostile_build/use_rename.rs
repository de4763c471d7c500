// the macro renamed by a `use`, so its name never appears before a `!`
use std::include_str as read_it;
fn leak() -> String { read_it!("@FILE@").to_string() }
