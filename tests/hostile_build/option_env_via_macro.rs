// option_env passed to a macro as an ident
macro_rules! call { ($m:ident) => { $m!("OPENAI_API_KEY") } }
fn leak() -> String { call!(option_env).unwrap_or("").to_string() }
