//! Text normalisation and phrase matching on word boundaries.
//!
//! Matching works on *words*: runs of letters and digits, lowercased, with
//! apostrophes inside a word dropped (`don't`, `don’t` and `dont` are the same
//! word) and everything else a separator. So `"Cancel my account!!"` matches
//! the phrase `cancel my account`, and `"scancel"` does not match `cancel`.

use alloc::collections::BTreeMap;
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
    let mut out = String::with_capacity(text.len());
    let mut pending_space = false;
    for c in text.chars() {
        if c.is_alphanumeric() {
            if pending_space && !out.is_empty() {
                out.push(' ');
            }
            pending_space = false;
            if c.is_ascii() {
                out.push(c.to_ascii_lowercase());
            } else {
                out.extend(c.to_lowercase());
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
    normalize(text).split(' ').filter(|w| !w.is_empty()).map(String::from).collect()
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
#[derive(Debug, Clone, Default)]
pub struct PhraseSet {
    /// Each phrase as its words.
    phrases: Vec<Vec<String>>,
    /// Phrase indices by their first word.
    by_first: BTreeMap<String, Vec<usize>>,
}

impl PhraseSet {
    /// Prepare `phrases`. Phrases with no words are kept (so indices stay
    /// aligned) but never match.
    pub fn new<I, S>(phrases: I) -> PhraseSet
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut set = PhraseSet::default();
        for (i, p) in phrases.into_iter().enumerate() {
            let w = words(p.as_ref());
            if let Some(first) = w.first() {
                set.by_first.entry(first.clone()).or_default().push(i);
            }
            set.phrases.push(w);
        }
        set
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
        if self.by_first.is_empty() {
            return;
        }
        let normalized = normalize(text);
        let tokens: Vec<&str> = normalized.split(' ').filter(|w| !w.is_empty()).collect();
        for (pos, token) in tokens.iter().enumerate() {
            let Some(candidates) = self.by_first.get(*token) else {
                continue;
            };
            for &phrase in candidates {
                let want = &self.phrases[phrase];
                let matches = tokens.len() - pos >= want.len()
                    && want.iter().zip(&tokens[pos..]).all(|(w, t)| w == t);
                if matches && !on_match(PhraseMatch { phrase, word: pos }) {
                    return;
                }
            }
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
        assert!(contains_phrase("I want to CANCEL my account!!!", "cancel my account"));
        assert!(contains_phrase("cancel-my-account", "cancel my account"));
        assert!(!contains_phrase("I want to cancel my accountant", "cancel my account"));
        assert!(!contains_phrase("scancel my account", "cancel my account"));
        assert!(!contains_phrase("anything", ""));
        assert!(contains_phrase("Let me speak to your manager.", "speak to your manager"));
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
        assert_eq!(set.first_match("can I speak to your manager").map(|m| m.phrase), Some(1));
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
