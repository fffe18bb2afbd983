//! 1. Without std, `wasm32-wasip2` has no `memcmp`/`bcmp`; wasi-libc
//!    provides them (and nothing it links for them imports WASI).
//! 2. The VADER lexicons become sorted static tables, the word lexicon
//!    also hashed (nothing parsed or built per call: every call is a fresh
//!    instance).

use std::collections::BTreeMap;
use std::fmt::Write as _;

#[path = "src/fnv1a.rs"]
mod fnv1a;
use fnv1a::fnv1a;

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
    let lexicon = table("vader_lexicon.tsv");
    for (word, valence) in &lexicon {
        let v: f64 = valence
            .parse()
            .unwrap_or_else(|_| panic!("bad valence {valence:?} for {word:?}"));
        writeln!(out, "    ({word:?}, {v:?}),").unwrap();
    }
    // An open-addressing hash table over it: a word is found in one or two
    // probes (FNV-1a), where a binary search compares a dozen strings.
    let slots = (lexicon.len() * 2).next_power_of_two();
    assert!(
        lexicon.len() < usize::from(u16::MAX),
        "slots hold u16 indices"
    );
    let mut index = vec![0u16; slots];
    for (i, word) in lexicon.keys().enumerate() {
        let mut s = fnv1a(word.as_bytes()) as usize & (slots - 1);
        while index[s] != 0 {
            s = (s + 1) & (slots - 1);
        }
        index[s] = u16::try_from(i + 1).expect("checked above");
    }
    write!(
        out,
        "];\n\n/// [`LEXICON`] hashed: slot `fnv1a(word) & (len - 1)` onwards holds\n/// the word's index + 1, 0 ending the probe.\npub(crate) static LEXICON_SLOTS: [u16; {slots}] = [\n"
    )
    .unwrap();
    for chunk in index.chunks(16) {
        let line: Vec<String> = chunk.iter().map(u16::to_string).collect();
        writeln!(out, "    {},", line.join(", ")).unwrap();
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
