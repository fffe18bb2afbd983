//! FNV-1a, 32 bits: the hash the VADER lexicon is laid out by at build
//! time (`build.rs` includes this file) and looked up by at run time
//! (`sentiment.rs`), so the two cannot differ.

/// The FNV-1a hash of `bytes`.
pub(crate) fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}
