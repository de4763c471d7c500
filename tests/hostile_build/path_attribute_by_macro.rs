// a #[path] attribute assembled by a macro from a `#` passed in as a token
macro_rules! m { ($h:tt) => { $h [path = "@RSFILE@"] mod evil; } }
m!(#);
fn leak() -> String { evil::leak() }
