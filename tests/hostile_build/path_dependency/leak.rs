// a path dependency on a crate outside the package
fn leak() -> String { canary_crate::leak() }
