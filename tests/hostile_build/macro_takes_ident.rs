// a macro_rules! that takes `include_str` as an ident and calls it
macro_rules! call { ($m:ident, $p:expr) => { $m!($p) } }
fn leak() -> String { call!(include_str, "@FILE@").to_string() }
