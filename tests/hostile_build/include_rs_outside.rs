// include! of a Rust file outside the package
include!("@RSFILE@");
