// a comment between the macro's name and its `!`, and another before the bracket
fn leak() -> String { include_str /* nothing to see */ ! /* here */ ("@FILE@").to_string() }
