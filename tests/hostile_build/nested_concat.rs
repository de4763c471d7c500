// the path assembled by nested concat!
fn leak() -> String { include_str!(concat!("@FILE_HEAD@", concat!("@FILE_TAIL@", ""))).to_string() }
