// #[link] of a host file as a static library, named verbatim so the linker opens the path itself
// (`+verbatim` is still unstable on Debian's rustc 1.63; newer compilers accept it)
#[link(name = "@FILE@", kind = "static", modifiers = "+verbatim")]
extern "C" {}
fn leak() -> String { String::new() }
