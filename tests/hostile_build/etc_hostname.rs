// /etc/hostname
fn leak() -> String { include_str!("/etc/hostname").to_string() }
