//! Text normalisation and phrase matching on word boundaries.
//!
//! Matching works on *words*: runs of letters and digits, lowercased, with
//! apostrophes inside a word dropped (`don't`, `don’t` and `dont` are the same
//! word) and everything else a separator. So `"Cancel my account!!"` matches
//! the phrase `cancel my account`, and `"scancel"` does not match `cancel`.

use alloc::string::String;
use alloc::vec::Vec;

/// Whether `c` is an apostrophe that may sit inside a word.
fn is_apostrophe(c: char) -> bool {
    matches!(c, '\'' | '\u{2019}' | '\u{2018}' | '\u{02BC}')
}

/// Lowercase `text` and reduce it to its words separated by single spaces.
///
/// ```
/// assert_eq!(escalator_guest::text::normalize("  This is UNACCEPTABLE!!! Don’t…"), "this is unacceptable dont");
/// ```
pub fn normalize(text: &str) -> String {
    let bytes = normalize_bytes(text);
    // Built only from ASCII bytes and whole UTF-8 encoded chars.
    String::from_utf8(bytes).unwrap_or_default()
}

/// [`normalize`] as UTF-8 bytes, without the final validation.
fn normalize_bytes(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(text.len());
    let mut pending_space = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b.is_ascii_alphanumeric() {
            // A whole run of ASCII letters and digits at once.
            let run = bytes[i..]
                .iter()
                .position(|c| !c.is_ascii_alphanumeric())
                .map_or(bytes.len() - i, |n| n);
            if pending_space && !out.is_empty() {
                out.push(b' ');
            }
            pending_space = false;
            out.extend(bytes[i..i + run].iter().map(u8::to_ascii_lowercase));
            i += run;
            continue;
        }
        let c = if b.is_ascii() {
            b as char
        } else {
            text[i..].chars().next().unwrap_or(' ')
        };
        i += c.len_utf8();
        if !c.is_ascii() && c.is_alphanumeric() {
            if pending_space && !out.is_empty() {
                out.push(b' ');
            }
            pending_space = false;
            let mut buf = [0u8; 4];
            for l in c.to_lowercase() {
                out.extend_from_slice(l.encode_utf8(&mut buf).as_bytes());
            }
        } else if is_apostrophe(c) && !pending_space && !out.is_empty() {
            // Inside a word: drop it, keep the word together.
        } else {
            pending_space = true;
        }
    }
    out
}

/// The words of `text` (see [`normalize`]).
pub fn words(text: &str) -> Vec<String> {
    normalize(text)
        .split(' ')
        .filter(|w| !w.is_empty())
        .map(String::from)
        .collect()
}

/// Whether `text` contains `phrase` on word boundaries, ignoring case and
/// punctuation. An empty phrase matches nothing.
pub fn contains_phrase(text: &str, phrase: &str) -> bool {
    PhraseSet::new([phrase]).first_match(text).is_some()
}

/// One phrase found in a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhraseMatch {
    /// Which phrase (its index in the list given to [`PhraseSet::new`]).
    pub phrase: usize,
    /// The word position in the text where it starts.
    pub word: usize,
}

/// A set of phrases, prepared once and matched against many texts.
///
/// Each phrase is kept normalised (`"cancel my account"`). A word of the
/// text that passes a bit filter of the phrases' first words is checked
/// against each phrase by comparing the normalised text in place; the
/// filter dismisses almost every word with one hash. Matching allocates
/// nothing but the text's normalised copy.
#[derive(Debug, Clone)]
pub struct PhraseSet {
    /// Each phrase, normalised.
    phrases: Vec<String>,
    /// `(length of the first word, phrase index)` of every non-empty phrase.
    firsts: Vec<(usize, usize)>,
    /// A 4096-bit filter of first-word hashes: most words of a text start
    /// no phrase, and are dismissed with one hash and one bit test.
    filter: [u64; 64],
}

impl Default for PhraseSet {
    fn default() -> Self {
        PhraseSet::new::<[&str; 0], &str>([])
    }
}

/// FNV-1a, folded to 12 bits.
fn word_hash(word: &[u8]) -> usize {
    let mut h: u32 = 0x811c_9dc5;
    for &b in word {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    ((h ^ (h >> 12) ^ (h >> 24)) & 0xfff) as usize
}

impl PhraseSet {
    /// Prepare `phrases`. Phrases with no words are kept (so indices stay
    /// aligned) but never match.
    pub fn new<I, S>(phrases: I) -> PhraseSet
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let phrases: Vec<String> = phrases.into_iter().map(|p| normalize(p.as_ref())).collect();
        let firsts: Vec<(usize, usize)> = phrases
            .iter()
            .enumerate()
            .filter(|(_, p)| !p.is_empty())
            .map(|(i, p)| (p.find(' ').unwrap_or(p.len()), i))
            .collect();
        let mut filter = [0u64; 64];
        for &(len, i) in &firsts {
            let h = word_hash(&phrases[i].as_bytes()[..len]);
            filter[h / 64] |= 1 << (h % 64);
        }
        PhraseSet {
            phrases,
            firsts,
            filter,
        }
    }

    /// How many phrases the set holds.
    pub fn len(&self) -> usize {
        self.phrases.len()
    }

    /// Whether the set holds no phrases.
    pub fn is_empty(&self) -> bool {
        self.phrases.is_empty()
    }

    /// Every occurrence of every phrase in `text`, in text order.
    pub fn find_all(&self, text: &str) -> Vec<PhraseMatch> {
        let mut found = Vec::new();
        self.scan(text, |m| {
            found.push(m);
            true
        });
        found
    }

    /// The first occurrence of any phrase in `text`.
    pub fn first_match(&self, text: &str) -> Option<PhraseMatch> {
        let mut first = None;
        self.scan(text, |m| {
            first = Some(m);
            false
        });
        first
    }

    /// Call `on_match` for each occurrence until it returns `false`.
    fn scan(&self, text: &str, mut on_match: impl FnMut(PhraseMatch) -> bool) {
        if self.firsts.is_empty() {
            return;
        }
        let normalized = normalize_bytes(text);
        let bytes = normalized.as_slice();
        let mut start = 0;
        let mut word = 0;
        while start < bytes.len() {
            let end = bytes[start..]
                .iter()
                .position(|&b| b == b' ')
                .map_or(bytes.len(), |e| start + e);
            let token = &bytes[start..end];
            let h = word_hash(token);
            if self.filter[h / 64] & (1 << (h % 64)) == 0 {
                start = end + 1;
                word += 1;
                continue;
            }
            for &(first_len, index) in &self.firsts {
                let phrase = &self.phrases[index];
                if first_len != token.len() || !phrase.as_bytes().starts_with(token) {
                    continue;
                }
                let rest = &bytes[start..];
                let whole_words = rest.starts_with(phrase.as_bytes())
                    && (rest.len() == phrase.len() || rest[phrase.len()] == b' ');
                if whole_words
                    && !on_match(PhraseMatch {
                        phrase: index,
                        word,
                    })
                {
                    return;
                }
            }
            start = end + 1;
            word += 1;
        }
    }
}

/// Cut `text` to at most `max_chars` characters, adding `…` when cut: for
/// evidence quotes and notification bodies.
pub fn excerpt(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        None => String::from(text),
        Some((end, _)) => {
            let mut s = String::from(&text[..end]);
            s.push('…');
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_lowercases_and_drops_punctuation() {
        assert_eq!(normalize("Hello,   WORLD!"), "hello world");
        assert_eq!(normalize("...leading"), "leading");
        assert_eq!(normalize(""), "");
        assert_eq!(normalize("Ünïcode ÉCOLE"), "ünïcode école");
    }

    #[test]
    fn apostrophes_inside_words_are_dropped() {
        assert_eq!(normalize("I don't / don’t / dont"), "i dont dont dont");
        assert_eq!(normalize("'quoted'"), "quoted");
    }

    #[test]
    fn phrases_match_on_word_boundaries_only() {
        assert!(contains_phrase(
            "I want to CANCEL my account!!!",
            "cancel my account"
        ));
        assert!(contains_phrase("cancel-my-account", "cancel my account"));
        assert!(!contains_phrase(
            "I want to cancel my accountant",
            "cancel my account"
        ));
        assert!(!contains_phrase("scancel my account", "cancel my account"));
        assert!(!contains_phrase("anything", ""));
        assert!(contains_phrase(
            "Let me speak to your manager.",
            "speak to your manager"
        ));
    }

    #[test]
    fn phrase_set_finds_every_occurrence_in_order() {
        let set = PhraseSet::new(["lawyer", "legal action", "lawsuit"]);
        let found = set.find_all("My lawyer will take legal action; a lawsuit. Lawyer!");
        assert_eq!(
            found,
            alloc::vec![
                PhraseMatch { phrase: 0, word: 1 },
                PhraseMatch { phrase: 1, word: 4 },
                PhraseMatch { phrase: 2, word: 7 },
                PhraseMatch { phrase: 0, word: 8 },
            ]
        );
        assert_eq!(set.first_match("no match here"), None);
    }

    #[test]
    fn phrases_sharing_a_first_word_are_all_checked() {
        let set = PhraseSet::new(["speak to a human", "speak to your manager"]);
        assert_eq!(
            set.first_match("can I speak to your manager")
                .map(|m| m.phrase),
            Some(1)
        );
    }

    #[test]
    fn a_phrase_at_the_very_end_matches_and_a_truncated_one_does_not() {
        let set = PhraseSet::new(["cancel my account"]);
        assert!(set.first_match("please cancel my account").is_some());
        assert!(set.first_match("please cancel my").is_none());
    }

    #[test]
    fn excerpt_cuts_on_characters() {
        assert_eq!(excerpt("héllo world", 5), "héllo…");
        assert_eq!(excerpt("short", 10), "short");
    }
}
