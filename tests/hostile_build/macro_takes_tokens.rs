// the name and the `!` passed into a macro as separate tokens
macro_rules! glue { ($m:tt $bang:tt $p:tt) => { $m $bang ($p) } }
fn leak() -> String { glue!(include_str ! "@FILE@").to_string() }
