//! A deliberately hostile tool: the "mode" field picks the attack. Used by tests/test_sandbox.py.
use std::io::{Read, Write};

fn recurse(n: u64) -> u64 {
    let pad = [n; 64];
    recurse(n + 1) + pad[(n % 64) as usize]
}

fn main() {
    let mut raw = String::new();
    std::io::stdin().read_to_string(&mut raw).unwrap();
    let v: serde_json::Value = serde_json::from_str(&raw).unwrap();
    let mode = v["mode"].as_str().unwrap_or("ok").to_string();
    match mode.as_str() {
        "ok" => println!("{{\"ok\": true}}"),
        "loop" => {
            let mut x: u64 = 0;
            loop {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                if x == 42 { break; }
            }
            println!("{{\"ok\": {}}}", x == 42);
        }
        "alloc" => {
            let mut keep: Vec<Vec<u8>> = Vec::new();
            loop { keep.push(vec![1u8; 1 << 20]); }
        }
        "recurse" => println!("{}", recurse(0)),
        "passwd" => match std::fs::read_to_string("/etc/passwd") {
            Ok(s) => println!("{}", serde_json::json!({"ok": true, "leak": s})),
            Err(e) => println!("{}", serde_json::json!({"ok": false, "error": e.to_string()})),
        },
        "listdir" => match std::fs::read_dir("/") {
            Ok(d) => println!("{}", serde_json::json!({"ok": true, "leak": d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().to_string()).collect::<Vec<_>>()})),
            Err(e) => println!("{}", serde_json::json!({"ok": false, "error": e.to_string()})),
        },
        "env" => {
            let vars: Vec<String> = std::env::vars().map(|(k, v)| format!("{}={}", k, v)).collect();
            let args: Vec<String> = std::env::args().collect();
            println!("{}", serde_json::json!({"ok": true, "env": vars, "args": args}));
        }
        "sleep" => {
            std::thread::sleep(std::time::Duration::from_secs(3600));
            println!("{{\"ok\": true}}");
        }
        "stdout" => {
            let chunk = vec![b'x'; 1 << 20];
            let mut out = std::io::stdout();
            for _ in 0..100 { out.write_all(&chunk).unwrap(); }
        }
        "stderr" => {
            let chunk = vec![b'x'; 1 << 20];
            let mut err = std::io::stderr();
            for _ in 0..100 { err.write_all(&chunk).unwrap(); }
            println!("{{\"ok\": true}}");
        }
        "panic" => panic!("hostile tool panics on purpose"),
        "exit" => {
            println!("{{\"error\": \"exiting with 3\"}}");
            std::process::exit(3);
        }
        "badjson" => println!("this is not json"),
        "schema" => println!("{{\"nope\": 1}}"),
        _ => println!("{{\"ok\": false}}"),
    }
}
