//! html-to-text: strip HTML markup into readable plain text.
use serde_json::{json, Value};
use std::io::Read;
use std::process::exit;

/// Elements that end the current line (a line break before and after them).
const LINE_BLOCKS: [&str; 28] = [
    "div", "li", "tr", "ul", "ol", "dl", "dt", "dd", "table", "thead", "tbody", "tfoot", "blockquote", "pre",
    "hr", "section", "article", "header", "footer", "nav", "aside", "main", "form", "figure", "figcaption",
    "address", "caption", "fieldset",
];
/// Elements that are separated from surrounding text by a blank line.
const PARA_BLOCKS: [&str; 7] = ["p", "h1", "h2", "h3", "h4", "h5", "h6"];
/// Elements whose content is dropped entirely.
const RAW_SKIP: [&str; 2] = ["script", "style"];

fn named_entity(name: &str) -> Option<&'static str> {
    Some(match name {
        "amp" => "&",
        "lt" => "<",
        "gt" => ">",
        "quot" => "\"",
        "apos" => "'",
        "nbsp" => " ",
        "copy" => "©",
        "reg" => "®",
        "trade" => "™",
        "hellip" => "…",
        "mdash" => "—",
        "ndash" => "–",
        "euro" => "€",
        "pound" => "£",
        "yen" => "¥",
        "cent" => "¢",
        "sect" => "§",
        "para" => "¶",
        "deg" => "°",
        "plusmn" => "±",
        "times" => "×",
        "divide" => "÷",
        "middot" => "·",
        "bull" => "•",
        "laquo" => "«",
        "raquo" => "»",
        "lsquo" => "‘",
        "rsquo" => "’",
        "ldquo" => "“",
        "rdquo" => "”",
        "shy" => "",
        _ => return None,
    })
}

/// Decode character references in a text segment. Unknown or malformed references are kept verbatim.
fn decode_entities(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let semi = after.find(';').filter(|&i| i > 0 && i <= 32);
        let mut decoded: Option<String> = None;
        if let Some(i) = semi {
            let name = &after[..i];
            if let Some(num) = name.strip_prefix('#') {
                let code = if let Some(hex) = num.strip_prefix('x').or_else(|| num.strip_prefix('X')) {
                    if !hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit()) {
                        Some(u32::from_str_radix(hex, 16).unwrap_or(u32::MAX))
                    } else {
                        None
                    }
                } else if !num.is_empty() && num.chars().all(|c| c.is_ascii_digit()) {
                    Some(num.parse::<u32>().unwrap_or(u32::MAX))
                } else {
                    None
                };
                if let Some(code) = code {
                    let c = if code == 0 { '\u{FFFD}' } else { char::from_u32(code).unwrap_or('\u{FFFD}') };
                    decoded = Some(c.to_string());
                }
            } else if let Some(text) = named_entity(name) {
                decoded = Some(text.to_string());
            }
        }
        match (decoded, semi) {
            (Some(text), Some(i)) => {
                out.push_str(&text);
                rest = &after[i + 1..];
            }
            _ => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Marker for a line break produced by markup (br and block elements); NUL never survives from the input.
const BREAK: char = '\0';

/// Ensure the output ends with at least `k` markup line breaks (ignoring trailing whitespace), unless it has
/// no text yet.
fn ensure_breaks(out: &mut String, k: usize) {
    let trimmed = out.trim_end_matches(|c: char| c.is_whitespace() || c == BREAK);
    if trimmed.is_empty() {
        return;
    }
    let have = out[trimmed.len()..].matches(BREAK).count();
    for _ in have..k {
        out.push(BREAK);
    }
}

/// Find the end ('>' index) of a tag starting at `start` ('<'), honouring quoted attribute values.
fn tag_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut quote: Option<u8> = None;
    let mut i = start + 1;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if b == b'"' || b == b'\'' => quote = Some(b),
            None if b == b'>' => return Some(i),
            None => {}
        }
        i += 1;
    }
    None
}

/// Produce raw text with BREAK markers for markup line breaks (before whitespace normalisation).
fn strip(html: &str) -> String {
    let html = html.replace(BREAK, "");
    let html = html.as_str();
    let lower = html.to_ascii_lowercase(); // same byte offsets as `html`
    let bytes = html.as_bytes();
    let mut out = String::new();
    let mut pos = 0;
    let mut text_start = 0;
    while pos < bytes.len() {
        if bytes[pos] != b'<' {
            pos += 1;
            continue;
        }
        let next = bytes.get(pos + 1).copied().unwrap_or(0);
        let is_close = next == b'/';
        let name_first = if is_close { bytes.get(pos + 2).copied().unwrap_or(0) } else { next };
        let is_markup = next == b'!' || next == b'?' || name_first.is_ascii_alphabetic();
        if !is_markup {
            pos += 1; // a literal '<'
            continue;
        }
        out.push_str(&decode_entities(&html[text_start..pos]));
        if lower[pos..].starts_with("<!--") {
            pos = match lower[pos + 4..].find("-->") {
                Some(i) => pos + 4 + i + 3,
                None => bytes.len(),
            };
            text_start = pos;
            continue;
        }
        let end = match tag_end(bytes, pos) {
            Some(e) => e,
            None => {
                // Unterminated tag: keep the rest as text.
                text_start = pos;
                break;
            }
        };
        if next == b'!' || next == b'?' {
            pos = end + 1;
            text_start = pos;
            continue;
        }
        let name_start = if is_close { pos + 2 } else { pos + 1 };
        let name_len = lower[name_start..end]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == ':'))
            .unwrap_or(end - name_start);
        let name = &lower[name_start..name_start + name_len];
        pos = end + 1;
        if !is_close && RAW_SKIP.contains(&name) {
            let closing = format!("</{}", name);
            pos = match lower[pos..].find(&closing) {
                Some(i) => match tag_end(bytes, pos + i) {
                    Some(e) => e + 1,
                    None => bytes.len(),
                },
                None => bytes.len(),
            };
        } else if name == "br" {
            out.push(BREAK);
        } else if PARA_BLOCKS.contains(&name) {
            ensure_breaks(&mut out, 2);
        } else if LINE_BLOCKS.contains(&name) {
            ensure_breaks(&mut out, 1);
        } else if name == "td" || name == "th" {
            out.push(' ');
        }
        text_start = pos;
    }
    if text_start < bytes.len() {
        out.push_str(&decode_entities(&html[text_start..]));
    }
    out
}

fn is_space(c: char) -> bool {
    c.is_whitespace() && c != '\n'
}

fn html_to_text(html: &str, preserve_newlines: bool) -> String {
    let raw = strip(html).replace("\r\n", "\n").replace('\r', "\n");
    if !preserve_newlines {
        return raw.split(|c: char| c.is_whitespace() || c == BREAK).filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ");
    }
    // Source newlines only count inside a segment of text between markup breaks, so that the indentation
    // and newlines of pretty-printed HTML around block elements do not create extra lines.
    let mut lines: Vec<String> = Vec::new();
    for segment in raw.split(BREAK) {
        let segment = segment.trim_matches(|c: char| c.is_whitespace());
        for line in segment.split('\n') {
            let collapsed = line.split(is_space).filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ");
            if collapsed.is_empty() && lines.last().map_or(true, |l| l.is_empty()) {
                continue; // no leading blank lines, no two blank lines in a row
            }
            lines.push(collapsed);
        }
    }
    while lines.last().map_or(false, |l| l.is_empty()) {
        lines.pop();
    }
    lines.join("\n")
}

fn fail(message: &str) -> ! {
    println!("{}", json!({ "error": message }));
    exit(1)
}

fn main() {
    let mut raw = String::new();
    if std::io::stdin().read_to_string(&mut raw).is_err() {
        fail("input is not valid UTF-8");
    }
    let input: Value = serde_json::from_str(&raw).unwrap_or_else(|e| fail(&format!("input is not valid JSON: {}", e)));
    let html = match input.get("html") {
        Some(Value::String(s)) => s,
        Some(_) => fail("\"html\" must be a string"),
        None => fail("missing required field \"html\""),
    };
    let preserve = match input.get("preserve_newlines") {
        None => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => fail("\"preserve_newlines\" must be a boolean"),
    };
    println!("{}", json!({ "text": html_to_text(html, preserve) }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entities() {
        assert_eq!(decode_entities("a &amp; b &lt;c&gt; &#65;&#x42;&#X43; &euro;&hellip;"), "a & b <c> ABC €…");
        assert_eq!(decode_entities("AT&T &unknown; &amp &#xZZ; &#0;"), "AT&T &unknown; &amp &#xZZ; \u{FFFD}");
        assert_eq!(decode_entities("&#1114112;&#xD800;"), "\u{FFFD}\u{FFFD}");
    }

    #[test]
    fn blocks_and_scripts() {
        let html = "<html><head><style>p{color:red}</style><script>if (a < b) { x('</div>'); }</script></head>\
                    <body><h1>Title</h1><p>First <b>bold</b> para.</p><!-- hidden --><ul><li>One</li><li>Two</li></ul>\
                    line<br>break</body></html>";
        assert_eq!(html_to_text(html, true), "Title\n\nFirst bold para.\n\nOne\nTwo\nline\nbreak");
        assert_eq!(html_to_text(html, false), "Title First bold para. One Two line break");
    }

    #[test]
    fn blank_lines_and_spaces() {
        assert_eq!(html_to_text("  a  \t b <br><br><br><br> c  ", true), "a b\n\nc");
        assert_eq!(html_to_text("", true), "");
        assert_eq!(html_to_text("<div>\n  <p>Hello\n  world</p>\n\n\n  <p>Next</p>\n</div>", true), "Hello\nworld\n\nNext");
        assert_eq!(html_to_text("x < y and <3 >", true), "x < y and <3 >");
    }

    #[test]
    fn attributes_with_gt_and_unterminated() {
        assert_eq!(html_to_text("<a title=\"a>b\" href='x'>link</a> ok", true), "link ok");
        assert_eq!(html_to_text("text <b unterminated", true), "text <b unterminated");
        assert_eq!(html_to_text("a<!-- never closed", true), "a");
    }
}
