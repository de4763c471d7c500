// #[path] hidden inside cfg_attr, to a Rust file outside the package
#[cfg_attr(all(), path = "@RSFILE@")]
mod evil;
fn leak() -> String { evil::leak() }
