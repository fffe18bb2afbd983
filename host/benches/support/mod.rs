//! What the benchmarks share.

/// `line` repeated, space-separated, to about `bytes` (at least once).
pub fn filled(line: &str, bytes: usize) -> String {
    let mut body = String::new();
    while body.len() + line.len() < bytes {
        body.push_str(line);
        body.push(' ');
    }
    body.push_str(line);
    body
}
