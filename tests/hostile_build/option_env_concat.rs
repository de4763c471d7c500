// option_env! of a name assembled by concat!
fn leak() -> String { option_env!(concat!("EVOGIT_", "CANARY")).unwrap_or("").to_string() }
