// include_str! inside an inner doc attribute
#![doc = include_str!("@FILE@")]
fn leak() -> String { String::new() }
