//! 1. Without std, `wasm32-wasip2` has no `memcmp`/`bcmp`; wasi-libc
//!    provides them (and nothing it links for them imports WASI).
//! 2. The VADER lexicons become sorted static tables (binary search at run
//!    time, nothing parsed per call: every call is a fresh instance).

use std::collections::BTreeMap;
use std::fmt::Write as _;

fn main() {
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let std = std::env::var_os("CARGO_FEATURE_STD").is_some();
    if arch == "wasm32" && os == "wasi" && !std {
        println!("cargo:rustc-link-lib=c");
    }
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=data");

    // Later entries win, as in the reference implementation's dict.
    let table = |file: &str| -> BTreeMap<String, String> {
        let text = std::fs::read_to_string(format!("data/{file}"))
            .unwrap_or_else(|e| panic!("reading data/{file}: {e}"));
        text.lines()
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (k, v) = l
                    .split_once('\t')
                    .unwrap_or_else(|| panic!("data/{file}: no tab in {l:?}"));
                (k.to_string(), v.to_string())
            })
            .collect()
    };
    let mut out = String::from(
        "/// VADER's lexicon: (word, valence), sorted by word.\npub(crate) static LEXICON: &[(&str, f64)] = &[\n",
    );
    for (word, valence) in table("vader_lexicon.tsv") {
        let v: f64 = valence
            .parse()
            .unwrap_or_else(|_| panic!("bad valence {valence:?} for {word:?}"));
        writeln!(out, "    ({word:?}, {v:?}),").unwrap();
    }
    out.push_str("];\n\n/// VADER's emoji descriptions: (emoji, description), sorted by emoji.\npub(crate) static EMOJI: &[(char, &str)] = &[\n");
    let mut emoji: Vec<(char, String)> = table("vader_emoji.tsv")
        .into_iter()
        .map(|(k, v)| (k.chars().next().expect("an emoji"), v))
        .collect();
    emoji.sort();
    for (c, desc) in emoji {
        writeln!(out, "    ({c:?}, {desc:?}),").unwrap();
    }
    out.push_str("];\n");
    let dest = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("vader_tables.rs");
    std::fs::write(dest, out).expect("writing vader_tables.rs");
}
