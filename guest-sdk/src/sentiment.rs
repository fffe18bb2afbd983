//! VADER sentiment: a port of vaderSentiment 3.3.2 (Hutto & Gilbert,
//! ICWSM-14; MIT), rule for rule, so that scores agree with the reference
//! implementation (see `tests/vader_parity.rs`).
//!
//! ```
//! let s = escalator_guest::sentiment::polarity("This is unacceptable, I am furious!!");
//! assert!(s.compound < -0.6);
//! ```

use alloc::string::String;
use alloc::vec::Vec;

mod tables {
    include!(concat!(env!("OUT_DIR"), "/vader_tables.rs"));
}

const B_INCR: f64 = 0.293;
const B_DECR: f64 = -0.293;
const C_INCR: f64 = 0.733;
const N_SCALAR: f64 = -0.74;

const NEGATE: &[&str] = &[
    "aint",
    "arent",
    "cannot",
    "cant",
    "couldnt",
    "darent",
    "didnt",
    "doesnt",
    "ain't",
    "aren't",
    "can't",
    "couldn't",
    "daren't",
    "didn't",
    "doesn't",
    "dont",
    "hadnt",
    "hasnt",
    "havent",
    "isnt",
    "mightnt",
    "mustnt",
    "neither",
    "don't",
    "hadn't",
    "hasn't",
    "haven't",
    "isn't",
    "mightn't",
    "mustn't",
    "neednt",
    "needn't",
    "never",
    "none",
    "nope",
    "nor",
    "not",
    "nothing",
    "nowhere",
    "oughtnt",
    "shant",
    "shouldnt",
    "uhuh",
    "wasnt",
    "werent",
    "oughtn't",
    "shan't",
    "shouldn't",
    "uh-uh",
    "wasn't",
    "weren't",
    "without",
    "wont",
    "wouldnt",
    "won't",
    "wouldn't",
    "rarely",
    "seldom",
    "despite",
];

const BOOSTERS: &[(&str, f64)] = &[
    ("absolutely", B_INCR),
    ("almost", B_DECR),
    ("amazingly", B_INCR),
    ("awfully", B_INCR),
    ("barely", B_DECR),
    ("completely", B_INCR),
    ("considerable", B_INCR),
    ("considerably", B_INCR),
    ("decidedly", B_INCR),
    ("deeply", B_INCR),
    ("effing", B_INCR),
    ("enormous", B_INCR),
    ("enormously", B_INCR),
    ("entirely", B_INCR),
    ("especially", B_INCR),
    ("exceptional", B_INCR),
    ("exceptionally", B_INCR),
    ("extreme", B_INCR),
    ("extremely", B_INCR),
    ("fabulously", B_INCR),
    ("flippin", B_INCR),
    ("flipping", B_INCR),
    ("frackin", B_INCR),
    ("fracking", B_INCR),
    ("frickin", B_INCR),
    ("fricking", B_INCR),
    ("friggin", B_INCR),
    ("frigging", B_INCR),
    ("fuckin", B_INCR),
    ("fucking", B_INCR),
    ("fuggin", B_INCR),
    ("fugging", B_INCR),
    ("fully", B_INCR),
    ("greatly", B_INCR),
    ("hardly", B_DECR),
    ("hella", B_INCR),
    ("highly", B_INCR),
    ("hugely", B_INCR),
    ("incredible", B_INCR),
    ("incredibly", B_INCR),
    ("intensely", B_INCR),
    ("just enough", B_DECR),
    ("kind of", B_DECR),
    ("kind-of", B_DECR),
    ("kinda", B_DECR),
    ("kindof", B_DECR),
    ("less", B_DECR),
    ("little", B_DECR),
    ("major", B_INCR),
    ("majorly", B_INCR),
    ("marginal", B_DECR),
    ("marginally", B_DECR),
    ("more", B_INCR),
    ("most", B_INCR),
    ("occasional", B_DECR),
    ("occasionally", B_DECR),
    ("particularly", B_INCR),
    ("partly", B_DECR),
    ("purely", B_INCR),
    ("quite", B_INCR),
    ("really", B_INCR),
    ("remarkably", B_INCR),
    ("scarce", B_DECR),
    ("scarcely", B_DECR),
    ("slight", B_DECR),
    ("slightly", B_DECR),
    ("so", B_INCR),
    ("somewhat", B_DECR),
    ("sort of", B_DECR),
    ("sort-of", B_DECR),
    ("sorta", B_DECR),
    ("sortof", B_DECR),
    ("substantially", B_INCR),
    ("thoroughly", B_INCR),
    ("total", B_INCR),
    ("totally", B_INCR),
    ("tremendous", B_INCR),
    ("tremendously", B_INCR),
    ("uber", B_INCR),
    ("unbelievably", B_INCR),
    ("unusually", B_INCR),
    ("utter", B_INCR),
    ("utterly", B_INCR),
    ("very", B_INCR),
];

const SPECIAL_CASES: &[(&str, f64)] = &[
    ("the shit", 3.0),
    ("the bomb", 3.0),
    ("bad ass", 1.5),
    ("badass", 1.5),
    ("bus stop", 0.0),
    ("yeah right", -2.0),
    ("kiss of death", -1.5),
    ("to die for", 3.0),
    ("beating heart", 3.5),
];

/// ASCII punctuation, as Python's `string.punctuation`.
#[cfg(test)]
const PUNCTUATION: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

/// A word's valence in the lexicon (for tests; `polarity` hashes each
/// word once for every table).
#[cfg(test)]
fn lexicon(word: &str) -> Option<f64> {
    lexicon_hashed(word, crate::fnv1a::fnv1a(word.as_bytes()))
}

/// A word's valence in the lexicon, given its hash: the hash's slot, then
/// the next ones until an empty slot.
fn lexicon_hashed(word: &str, hash: u32) -> Option<f64> {
    let slots = &tables::LEXICON_SLOTS;
    let mask = slots.len() - 1;
    let mut s = hash as usize & mask;
    loop {
        let i = usize::from(slots[s]);
        let (w, v) = *tables::LEXICON.get(i.checked_sub(1)?)?;
        if w == word {
            return Some(v);
        }
        s = (s + 1) & mask;
    }
}

fn emoji(c: char) -> Option<&'static str> {
    tables::EMOJI
        .binary_search_by(|(e, _)| e.cmp(&c))
        .ok()
        .map(|i| tables::EMOJI[i].1)
}

/// Slots of a small table hashed at compile time: slot `fnv1a(word) &
/// 255` onwards holds the word's index + 1, 0 ending the probe. Most words
/// are in neither table and end at their first slot, with no string
/// compared (a binary search compared seven).
const SMALL_SLOTS: usize = 256;

const fn place(slots: &mut [u8; SMALL_SLOTS], key: &str, i: usize) {
    let mut s = crate::fnv1a::fnv1a(key.as_bytes()) as usize & (SMALL_SLOTS - 1);
    while slots[s] != 0 {
        s = (s + 1) & (SMALL_SLOTS - 1);
    }
    slots[s] = (i + 1) as u8;
}

static BOOSTER_SLOTS: [u8; SMALL_SLOTS] = {
    assert!(BOOSTERS.len() < SMALL_SLOTS / 2);
    let mut slots = [0u8; SMALL_SLOTS];
    let mut i = 0;
    while i < BOOSTERS.len() {
        place(&mut slots, BOOSTERS[i].0, i);
        i += 1;
    }
    slots
};

static NEGATE_SLOTS: [u8; SMALL_SLOTS] = {
    assert!(NEGATE.len() < SMALL_SLOTS / 2);
    let mut slots = [0u8; SMALL_SLOTS];
    let mut i = 0;
    while i < NEGATE.len() {
        place(&mut slots, NEGATE[i], i);
        i += 1;
    }
    slots
};

/// The index of `word` (whose hash is `hash`) in a table hashed into
/// `slots`, whose key at an index `key` gives.
fn probe(
    slots: &[u8; SMALL_SLOTS],
    hash: u32,
    word: &str,
    key: impl Fn(usize) -> &'static str,
) -> Option<usize> {
    probe_by(slots, hash, |k| k == word, key)
}

/// [`probe`] for the key that `is` accepts (whose hash is `hash`).
fn probe_by(
    slots: &[u8; SMALL_SLOTS],
    hash: u32,
    is: impl Fn(&str) -> bool,
    key: impl Fn(usize) -> &'static str,
) -> Option<usize> {
    let mut s = hash as usize & (SMALL_SLOTS - 1);
    loop {
        let i = usize::from(slots[s]).checked_sub(1)?;
        if is(key(i)) {
            return Some(i);
        }
        s = (s + 1) & (SMALL_SLOTS - 1);
    }
}

#[cfg(test)]
fn booster(word: &str) -> Option<f64> {
    booster_hashed(word, crate::fnv1a::fnv1a(word.as_bytes()))
}

fn booster_hashed(word: &str, hash: u32) -> Option<f64> {
    probe(&BOOSTER_SLOTS, hash, word, |i| BOOSTERS[i].0).map(|i| BOOSTERS[i].1)
}

/// Python's `str.isupper()`: at least one cased character, none lowercase.
fn is_upper(word: &str) -> bool {
    let mut cased = false;
    for c in word.chars() {
        if c.is_lowercase() {
            return false;
        }
        cased |= c.is_uppercase();
    }
    cased
}

fn negated(word_lower: &str) -> bool {
    let hash = crate::fnv1a::fnv1a(word_lower.as_bytes());
    probe(&NEGATE_SLOTS, hash, word_lower, |i| NEGATE[i]).is_some() || word_lower.contains("n't")
}

/// Strip leading and trailing ASCII punctuation unless that leaves two
/// characters or fewer (then it was probably an emoticon like `:)`).
fn strip_punc_if_word(token: &str) -> &str {
    // `char::is_ascii_punctuation` is exactly Python's
    // `string.punctuation` (a test checks it), without a scan of it per
    // character.
    let stripped = token.trim_matches(|c: char| c.is_ascii_punctuation());
    // Two characters or fewer: at most 8 bytes, and counted only then.
    let len = stripped.len();
    if len <= 2 || (len <= 8 && stripped.chars().count() <= 2) {
        token
    } else {
        stripped
    }
}

fn scalar_inc_dec(word: &str, booster: Option<f64>, valence: f64, is_cap_diff: bool) -> f64 {
    let Some(mut scalar) = booster else {
        return 0.0;
    };
    if valence < 0.0 {
        scalar *= -1.0;
    }
    if is_upper(word) && is_cap_diff {
        if valence > 0.0 {
            scalar += C_INCR;
        } else {
            scalar -= C_INCR;
        }
    }
    scalar
}

/// VADER's scores of a text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scores {
    /// The normalised, weighted composite score in -1..1, rounded to four
    /// decimals as the reference does.
    pub compound: f64,
    /// Share of positive words.
    pub pos: f64,
    /// Share of negative words.
    pub neg: f64,
    /// Share of neutral words.
    pub neu: f64,
}

/// The compound score of `text` in -1..1.
pub fn compound(text: &str) -> f64 {
    polarity(text).compound
}

/// VADER's scores of `text`.
pub fn polarity(text: &str) -> Scores {
    // Emoji become their descriptions ("😠" → "angry face"). Every emoji
    // is outside ASCII: ASCII text is taken as it is.
    let mut replaced = String::new();
    let text = if text.is_ascii() {
        text
    } else {
        replace_emoji(text, &mut replaced);
        &replaced
    };
    let text = text.trim();
    let words: Vec<&str> = text.split_whitespace().map(strip_punc_if_word).collect();
    // Lowercased into one buffer (one allocation for the text, not one
    // per word); a word with non-ASCII letters as `str::to_lowercase`
    // does it (a final sigma, say).
    let mut buf = String::with_capacity(text.len());
    let mut ends = Vec::with_capacity(words.len());
    for w in &words {
        if w.is_ascii() {
            buf.extend(w.bytes().map(|b| char::from(b.to_ascii_lowercase())));
        } else {
            buf.push_str(&w.to_lowercase());
        }
        ends.push(buf.len());
    }
    let lower: Vec<&str> = ends
        .iter()
        .scan(0, |start, &end| {
            let w = &buf[*start..end];
            *start = end;
            Some(w)
        })
        .collect();
    let all_caps = words.iter().filter(|w| is_upper(w)).count();
    let is_cap_diff = all_caps > 0 && all_caps < words.len();
    // Each word hashed and looked up once, not once per rule that asks.
    let (lex, boost): (Vec<Option<f64>>, Vec<Option<f64>>) = lower
        .iter()
        .map(|w| {
            let h = crate::fnv1a::fnv1a(w.as_bytes());
            (lexicon_hashed(w, h), booster_hashed(w, h))
        })
        .unzip();
    let words = Words {
        words: &words,
        lower: &lower,
        lex: &lex,
        boost: &boost,
    };

    let mut sentiments: Vec<f64> = Vec::with_capacity(lower.len());
    for i in 0..lower.len() {
        if boost[i].is_some() || (i + 1 < lower.len() && lower[i] == "kind" && lower[i + 1] == "of")
        {
            sentiments.push(0.0);
            continue;
        }
        sentiments.push(valence(&words, i, is_cap_diff));
    }
    but_check(&lower, &mut sentiments);
    score(&sentiments, text)
}

/// The words of a text as the rules see them: as written, lowercased, and
/// each one's lexicon valence and booster value.
struct Words<'a> {
    words: &'a [&'a str],
    lower: &'a [&'a str],
    lex: &'a [Option<f64>],
    boost: &'a [Option<f64>],
}

/// `text` with each emoji replaced by its description, into `out`.
fn replace_emoji(text: &str, out: &mut String) {
    out.reserve(text.len());
    let mut prev_space = true;
    for c in text.chars() {
        if let Some(description) = (!c.is_ascii()).then(|| emoji(c)).flatten() {
            if !prev_space {
                out.push(' ');
            }
            out.push_str(description);
            prev_space = false;
        } else {
            out.push(c);
            prev_space = c == ' ';
        }
    }
}

/// The valence of word `i` in its context.
fn valence(w: &Words<'_>, i: usize, is_cap_diff: bool) -> f64 {
    let (words, lower, lex) = (w.words, w.lower, w.lex);
    let l = |k: usize| lower[k];
    let Some(base) = lex[i] else {
        return 0.0;
    };
    let mut valence = base;
    if l(i) == "no" && i != words.len() - 1 && lex[i + 1].is_some() {
        valence = 0.0;
    }
    if (i > 0 && l(i - 1) == "no")
        || (i > 1 && l(i - 2) == "no")
        || (i > 2 && l(i - 3) == "no" && (l(i - 1) == "or" || l(i - 1) == "nor"))
    {
        valence = base * N_SCALAR;
    }
    if is_upper(words[i]) && is_cap_diff {
        if valence > 0.0 {
            valence += C_INCR;
        } else {
            valence -= C_INCR;
        }
    }
    for start_i in 0..3 {
        if i > start_i && lex[i - (start_i + 1)].is_none() {
            let mut s = scalar_inc_dec(
                words[i - (start_i + 1)],
                w.boost[i - (start_i + 1)],
                valence,
                is_cap_diff,
            );
            if start_i == 1 && s != 0.0 {
                s *= 0.95;
            }
            if start_i == 2 && s != 0.0 {
                s *= 0.9;
            }
            valence += s;
            valence = negation_check(valence, lower, start_i, i);
            if start_i == 2 {
                valence = special_idioms_check(valence, lower, i);
            }
        }
    }
    least_check(valence, w, i)
}

fn negation_check(valence: f64, lower: &[&str], start_i: usize, i: usize) -> f64 {
    let l = |k: usize| lower[k];
    match start_i {
        0 if negated(l(i - 1)) => valence * N_SCALAR,
        1 if l(i - 2) == "never" && (l(i - 1) == "so" || l(i - 1) == "this") => valence * 1.25,
        1 if l(i - 2) == "without" && l(i - 1) == "doubt" => valence,
        1 if negated(l(i - 2)) => valence * N_SCALAR,
        2 if (l(i - 3) == "never" && (l(i - 2) == "so" || l(i - 2) == "this"))
            || (l(i - 1) == "so" || l(i - 1) == "this") =>
        {
            valence * 1.25
        }
        2 if l(i - 3) == "without" && (l(i - 2) == "doubt" || l(i - 1) == "doubt") => valence,
        2 if negated(l(i - 3)) => valence * N_SCALAR,
        _ => valence,
    }
}

fn special_idioms_check(mut valence: f64, lower: &[&str], i: usize) -> f64 {
    let l = |k: usize| lower[k];
    // The word sequences the reference joins with spaces, compared and
    // hashed as joined without building the strings.
    let (onezero, twoonezero, twoone) = (
        [l(i - 1), l(i)],
        [l(i - 2), l(i - 1), l(i)],
        [l(i - 2), l(i - 1)],
    );
    let (threetwoone, threetwo) = ([l(i - 3), l(i - 2), l(i - 1)], [l(i - 3), l(i - 2)]);
    let seqs: [&[&str]; 5] = [&onezero, &twoonezero, &twoone, &threetwoone, &threetwo];
    for seq in seqs {
        if let Some(v) = special_case(seq) {
            valence = v;
            break;
        }
    }
    if lower.len() - 1 > i
        && let Some(v) = special_case(&[l(i), l(i + 1)])
    {
        valence = v;
    }
    if lower.len() - 1 > i + 1
        && let Some(v) = special_case(&[l(i), l(i + 1), l(i + 2)])
    {
        valence = v;
    }
    let ngrams: [&[&str]; 3] = [&threetwoone, &threetwo, &twoone];
    for ngram in ngrams {
        let hash = joined(ngram).fold(crate::fnv1a::fnv1a(b""), |h, part| {
            crate::fnv1a::fnv1a_more(h, part.as_bytes())
        });
        if let Some(i) = probe_by(
            &BOOSTER_SLOTS,
            hash,
            |k| is_joined(ngram, k),
            |i| BOOSTERS[i].0,
        ) {
            valence += BOOSTERS[i].1;
        }
    }
    valence
}

/// `words` as the reference joins them: the words with a single space
/// between each two.
fn joined<'a>(words: &'a [&'a str]) -> impl Iterator<Item = &'a str> {
    words
        .iter()
        .enumerate()
        .flat_map(|(j, w)| [if j == 0 { "" } else { " " }, *w])
}

/// Whether `key` is `words` joined with single spaces.
fn is_joined(words: &[&str], key: &str) -> bool {
    let mut rest = key;
    for part in joined(words) {
        match rest.strip_prefix(part) {
            Some(r) => rest = r,
            None => return false,
        }
    }
    rest.is_empty()
}

/// The special case whose key is `words` joined with single spaces.
fn special_case(words: &[&str]) -> Option<f64> {
    SPECIAL_CASES
        .iter()
        .find(|(k, _)| is_joined(words, k))
        .map(|(_, v)| *v)
}

fn least_check(valence: f64, w: &Words<'_>, i: usize) -> f64 {
    let l = |k: usize| w.lower[k];
    if i > 1 && w.lex[i - 1].is_none() && l(i - 1) == "least" {
        if l(i - 2) != "at" && l(i - 2) != "very" {
            return valence * N_SCALAR;
        }
    } else if i > 0 && w.lex[i - 1].is_none() && l(i - 1) == "least" {
        return valence * N_SCALAR;
    }
    valence
}

/// Words before "but" count half, words after it one and a half times.
/// Kept exactly as the reference: each value is looked up by its first
/// occurrence, so equal values earlier in the list are the ones scaled.
fn but_check(lower: &[&str], sentiments: &mut [f64]) {
    let Some(bi) = lower.iter().position(|w| *w == "but") else {
        return;
    };
    if sentiments.len() <= 64 {
        but_check_scan(bi, sentiments);
    } else {
        but_check_indexed(bi, sentiments);
    }
}

/// [`but_check`] as the reference writes it: a scan for each value's first
/// occurrence (quadratic; for short texts).
fn but_check_scan(bi: usize, sentiments: &mut [f64]) {
    for k in 0..sentiments.len() {
        let sentiment = sentiments[k];
        let si = sentiments.iter().position(|&x| x == sentiment).unwrap_or(k);
        if si < bi {
            sentiments[si] = sentiment * 0.5;
        } else if si > bi {
            sentiments[si] = sentiment * 1.5;
        }
    }
}

/// [`but_check`] with each value's positions kept in order, so the first
/// occurrence is found without a scan: the same result as
/// [`but_check_scan`] in O(n log n).
fn but_check_indexed(bi: usize, sentiments: &mut [f64]) {
    use alloc::collections::{BTreeMap, BTreeSet};
    // `==` on f64: 0.0 and -0.0 are equal (adding 0.0 makes -0.0 0.0);
    // the scores are never NaN.
    let key = |x: f64| (x + 0.0).to_bits();
    let mut at: BTreeMap<u64, BTreeSet<usize>> = BTreeMap::new();
    for (i, &x) in sentiments.iter().enumerate() {
        at.entry(key(x)).or_default().insert(i);
    }
    for k in 0..sentiments.len() {
        let sentiment = sentiments[k];
        let si = at
            .get(&key(sentiment))
            .and_then(|s| s.first().copied())
            .unwrap_or(k);
        let new = if si < bi {
            sentiment * 0.5
        } else if si > bi {
            sentiment * 1.5
        } else {
            continue;
        };
        if let Some(s) = at.get_mut(&key(sentiments[si])) {
            s.remove(&si);
        }
        sentiments[si] = new;
        at.entry(key(new)).or_default().insert(si);
    }
}

fn punctuation_emphasis(text: &str) -> f64 {
    let ep = text.matches('!').count().min(4) as f64 * 0.292;
    let qm = match text.matches('?').count() {
        0 | 1 => 0.0,
        n @ 2..=3 => n as f64 * 0.18,
        _ => 0.96,
    };
    ep + qm
}

/// Round to `decimals` places, half to even like Python's `round()`.
/// Core-only (no std on wasm); scores are far inside `i64` range.
fn round_to(x: f64, decimals: i32) -> f64 {
    let scale = libm_pow10(decimals);
    let y = x * scale;
    let t = y as i64;
    let frac = y - t as f64;
    let step = if y < 0.0 { -1 } else { 1 };
    let r = if frac.abs() > 0.5 || (frac.abs() == 0.5 && t % 2 != 0) {
        t + step
    } else {
        t
    };
    r as f64 / scale
}

fn libm_pow10(decimals: i32) -> f64 {
    (0..decimals).fold(1.0, |acc, _| acc * 10.0)
}

fn score(sentiments: &[f64], text: &str) -> Scores {
    if sentiments.is_empty() {
        return Scores {
            compound: 0.0,
            pos: 0.0,
            neg: 0.0,
            neu: 0.0,
        };
    }
    let mut sum: f64 = sentiments.iter().sum();
    let punct = punctuation_emphasis(text);
    if sum > 0.0 {
        sum += punct;
    } else if sum < 0.0 {
        sum -= punct;
    }
    let compound = (sum / sqrt(sum * sum + 15.0)).clamp(-1.0, 1.0);
    let (mut pos_sum, mut neg_sum, mut neu) = (0.0, 0.0, 0.0);
    for &s in sentiments {
        if s > 0.0 {
            pos_sum += s + 1.0;
        }
        if s < 0.0 {
            neg_sum += s - 1.0;
        }
        if s == 0.0 {
            neu += 1.0;
        }
    }
    if pos_sum > neg_sum.abs() {
        pos_sum += punct;
    } else if pos_sum < neg_sum.abs() {
        neg_sum -= punct;
    }
    let total = pos_sum + neg_sum.abs() + neu;
    Scores {
        compound: round_to(compound, 4),
        pos: round_to((pos_sum / total).abs(), 3),
        neg: round_to((neg_sum / total).abs(), 3),
        neu: round_to((neu / total).abs(), 3),
    }
}

/// Square root without std (Newton's method from a good first guess).
fn sqrt(x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    let mut y = f64::from_bits((x.to_bits() >> 1) + (1023_u64 << 51));
    for _ in 0..6 {
        y = 0.5 * (y + x / y);
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_sequences_are_compared_and_hashed_as_joined_with_spaces() {
        for words in [
            &["kind", "of"][..],
            &["the", "shit"],
            &["kiss", "of", "death"],
            &["x"],
        ] {
            let s = words.join(" ");
            assert!(is_joined(words, &s), "{s}");
            assert!(!is_joined(words, &alloc::format!("{s} ")), "{s}");
            assert!(!is_joined(words, &s[..s.len() - 1]), "{s}");
            let hash = joined(words).fold(crate::fnv1a::fnv1a(b""), |h, p| {
                crate::fnv1a::fnv1a_more(h, p.as_bytes())
            });
            assert_eq!(hash, crate::fnv1a::fnv1a(s.as_bytes()), "{s}");
        }
        assert!(!is_joined(&["bad", "ass"], "badass"));
        assert_eq!(special_case(&["bad", "ass"]), Some(1.5));
        assert_eq!(special_case(&["yeah", "right"]), Some(-2.0));
        assert_eq!(special_case(&["yeah", "rightly"]), None);
        // Every multi-word booster is found from its words.
        for (key, value) in BOOSTERS.iter().filter(|(k, _)| k.contains(' ')) {
            let words: Vec<&str> = key.split(' ').collect();
            let hash = joined(&words).fold(crate::fnv1a::fnv1a(b""), |h, p| {
                crate::fnv1a::fnv1a_more(h, p.as_bytes())
            });
            let i = probe_by(
                &BOOSTER_SLOTS,
                hash,
                |k| is_joined(&words, k),
                |i| BOOSTERS[i].0,
            );
            assert_eq!(i.map(|i| BOOSTERS[i].1), Some(*value), "{key}");
        }
    }

    #[test]
    fn ascii_punctuation_is_pythons_string_punctuation() {
        let ours: String = (0u8..128)
            .map(char::from)
            .filter(char::is_ascii_punctuation)
            .collect();
        assert_eq!(ours, PUNCTUATION);
        for (token, word) in [
            ("\"hello!!\"", "hello"),
            (":)", ":)"),
            ("(ok)", "(ok)"),
            ("...", "..."),
            ("«día»", "«día»"),
            ("¡¿ñú?!", "¡¿ñú"),
            ("!a!", "!a!"),
        ] {
            assert_eq!(strip_punc_if_word(token), word, "{token}");
        }
    }

    #[test]
    fn the_hashed_boosters_and_negations_find_every_word_and_nothing_else() {
        for (word, value) in BOOSTERS {
            assert_eq!(booster(word), Some(*value), "{word}");
            assert_eq!(booster(&alloc::format!("{word}x")), None, "{word}x");
            assert_eq!(booster(&word[1..]), None, "{}", &word[1..]);
        }
        for word in NEGATE {
            assert!(negated(word), "{word}");
            // (Any word with "n't" in it is a negation by the other rule.)
            let near = alloc::format!("{word}x");
            assert_eq!(negated(&near), near.contains("n't"), "{near}");
        }
        for other in ["", "the", "good", "VERY", "not really"] {
            assert_eq!(booster(other), None, "{other}");
        }
        assert!(!negated("the") && !negated("") && negated("isn't"));
        // Unique keys: a duplicate would hide its second value.
        let mut keys: Vec<&str> = BOOSTERS.iter().map(|(w, _)| *w).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), BOOSTERS.len());
    }

    #[test]
    fn the_hashed_lexicon_finds_every_word_and_nothing_else() {
        assert!(tables::LEXICON.windows(2).all(|w| w[0].0 < w[1].0));
        for (word, valence) in tables::LEXICON {
            assert_eq!(lexicon(word), Some(*valence), "{word}");
            // Near misses: a letter more or less.
            let longer = alloc::format!("{word}x");
            let found = tables::LEXICON.binary_search_by(|(w, _)| (*w).cmp(&longer));
            assert_eq!(lexicon(&longer), found.ok().map(|i| tables::LEXICON[i].1));
        }
        for other in ["", "zzzz", "notaword", "bad ass", "GOOD"] {
            assert_eq!(lexicon(other), None, "{other}");
        }
    }

    #[test]
    fn the_indexed_but_check_scales_exactly_as_the_reference_scan() {
        // Values with many repeats (zeros of both signs, equal scores),
        // "but" anywhere, lengths around and far past the switch.
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let values = [0.0, -0.0, 1.5, -1.5, 0.75, 2.25, -3.1, 1.9, 0.5];
        for round in 0..300 {
            let n = 1 + (next() % 400) as usize;
            let v: Vec<f64> = (0..n)
                .map(|_| values[(next() % values.len() as u64) as usize])
                .collect();
            let bi = (next() % n as u64) as usize;
            let (mut a, mut b) = (v.clone(), v);
            but_check_scan(bi, &mut a);
            but_check_indexed(bi, &mut b);
            let bits = |x: &[f64]| x.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&a), bits(&b), "round {round}, n {n}, but at {bi}");
        }
    }

    /// The reference implementation's own examples, with its scores.
    #[test]
    fn the_reference_examples_score_as_the_reference_does() {
        let cases = [
            ("VADER is smart, handsome, and funny.", 0.8316),
            ("VADER is smart, handsome, and funny!", 0.8439),
            ("VADER is very smart, handsome, and funny.", 0.8545),
            ("VADER is VERY SMART, handsome, and FUNNY.", 0.9227),
            ("VADER is VERY SMART, handsome, and FUNNY!!!", 0.9342),
            (
                "VADER is VERY SMART, uber handsome, and FRIGGIN FUNNY!!!",
                0.9469,
            ),
            ("VADER is not smart, handsome, nor funny.", -0.7424),
            ("The book was good.", 0.4404),
            ("At least it isn't a horrible book.", 0.431),
            ("The book was only kind of good.", 0.3832),
            (
                "The plot was good, but the characters are uncompelling and the dialog is not great.",
                -0.7042,
            ),
            ("Today SUX!", -0.5461),
            ("Today only kinda sux! But I'll get by, lol", 0.5249),
            ("Make sure you :) or :D today!", 0.8633),
            ("Catch utf-8 emoji such as 💘 and 💋 and 😁", 0.875),
            ("Not bad at all", 0.431),
            ("Sentiment analysis has never been good.", -0.3412),
            ("Sentiment analysis has never been this good!", 0.5672),
            ("Most automated sentiment analysis tools are shit.", -0.5574),
            ("With VADER, sentiment analysis is the shit!", 0.6476),
            ("Other sentiment analysis tools can be quite bad.", -0.5849),
            ("On the other hand, VADER is quite bad ass", 0.802),
            ("VADER is such a badass!", 0.4003),
            ("Without a doubt, excellent idea.", 0.7013),
            (
                "Roger Dodger is one of the least compelling variations on this theme.",
                -0.1695,
            ),
            ("Not such a badass after all.", -0.2584),
            ("", 0.0),
        ];
        for (text, expected) in cases {
            let got = compound(text);
            assert!(
                (got - expected).abs() < 1e-4,
                "{text:?}: got {got}, reference {expected}"
            );
        }
    }

    #[test]
    fn sqrt_is_accurate() {
        for x in [1e-9, 0.25, 2.0, 15.0, 1234.5678, 1e12] {
            let y = sqrt(x);
            assert!((y * y - x).abs() <= x * 1e-12, "{x}: {y}");
        }
    }

    #[test]
    fn halves_round_to_even_like_python() {
        assert_eq!(round_to(0.5, 0), 0.0);
        assert_eq!(round_to(1.5, 0), 2.0);
        assert_eq!(round_to(-2.5, 0), -2.0);
        assert_eq!(round_to(0.12344, 4), 0.1234);
    }
}
