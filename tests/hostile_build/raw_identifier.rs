// the macro's name as a raw identifier
fn leak() -> String { r#include_str!("@FILE@").to_string() }
