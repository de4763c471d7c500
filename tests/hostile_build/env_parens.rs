// env! of a secret planted in the building process's environment
fn leak() -> String { env!("EVOGIT_CANARY").to_string() }
