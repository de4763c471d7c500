// env! with square brackets, of the API key the building process holds
fn leak() -> String { env!["OPENAI_API_KEY"].to_string() }
