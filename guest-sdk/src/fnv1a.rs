//! FNV-1a, 32 bits: the hash the VADER lexicon is laid out by at build
//! time (`build.rs` includes this file) and looked up by at run time
//! (`sentiment.rs`), so the two cannot differ.

/// The FNV-1a hash of `bytes` (a `const fn`: the smaller tables are laid
/// out at compile time).
pub(crate) const fn fnv1a(bytes: &[u8]) -> u32 {
    fnv1a_more(0x811c_9dc5, bytes)
}

/// The hash `h` of some bytes, continued over `bytes`: `fnv1a_more(fnv1a(a),
/// b) == fnv1a(a ++ b)`.
#[allow(dead_code, reason = "build.rs includes this file and uses only fnv1a")]
pub(crate) const fn fnv1a_more(mut h: u32, bytes: &[u8]) -> u32 {
    let mut i = 0;
    while i < bytes.len() {
        h = (h ^ bytes[i] as u32).wrapping_mul(0x0100_0193);
        i += 1;
    }
    h
}
