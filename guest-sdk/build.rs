//! Without std, `wasm32-wasip2` has no `memcmp`/`bcmp`; wasi-libc provides
//! them (and nothing it links for them imports WASI).
fn main() {
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let std = std::env::var_os("CARGO_FEATURE_STD").is_some();
    if arch == "wasm32" && os == "wasi" && !std {
        println!("cargo:rustc-link-lib=c");
    }
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=../wit");
}
