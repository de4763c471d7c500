// include_bytes! of a host file
fn leak() -> String { String::from_utf8_lossy(include_bytes!("@FILE@")).into_owned() }
