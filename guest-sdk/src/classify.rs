//! A linear text classifier whose weights live in the component's memory
//! image: what the `learned` trigger runs and what `escalator learn` fits.
//!
//! Both sides use this module, so a ticket's features are the same bits
//! when the model is fitted (natively, in the host) and when it is applied
//! (in wasm). Features are hashed (no vocabulary to ship): each word of two
//! or more letters or digits, lowercased, each pair of neighbouring words,
//! and `field=value` pairs (category and plan), hashed with FNV-1a and a
//! 64-bit finaliser into [`BUCKETS`] buckets. A ticket's feature vector is
//! the set of buckets it touches, each weighted by its inverse document
//! frequency in the fitting data and scaled to unit length (binary
//! TF-IDF); a bucket no fitted ticket touched weighs nothing.
//!
//! The model is a [`MODEL_CAPACITY`]-byte image: a header ([`MAGIC`], its
//! capacity, the bytes in use), then the payload ([`Model::read`] documents
//! its layout) with one `u8` IDF and one `i16` weight per bucket and class, so a fresh
//! instance reads the weights where they lie (a copy-on-write mapping of
//! the component's data) instead of parsing anything.

use alloc::string::String;
use alloc::vec::Vec;

/// The classes a model predicts, in order: three tiers that escalate and
/// `none` (stays with the AI agent; no escalation).
pub const LABELS: [&str; CLASSES] = ["critical", "high", "medium", "none"];
/// How many classes.
pub const CLASSES: usize = 4;
/// log2 of the number of hash buckets.
pub const BUCKETS_LOG2: u32 = 16;
/// Hash buckets (features) per class.
pub const BUCKETS: usize = 1 << BUCKETS_LOG2;
/// The first bytes of a model image: how `escalator learn` finds the image
/// inside the compiled component.
pub const MAGIC: [u8; 16] = *b"ESCALATOR-MODEL\x01";
/// Bytes before the payload: the magic, the capacity (u32) and the bytes of
/// payload in use (u32; 0 = no model).
pub const HEADER: usize = 24;
/// Bytes of the payload before the weights.
pub const PAYLOAD_HEAD: usize = 64;
/// The whole image.
pub const MODEL_CAPACITY: usize = HEADER + PAYLOAD_HEAD + BUCKETS + BUCKETS * CLASSES * 2;
/// The payload format's version.
pub const VERSION: u32 = 3;
/// An IDF is stored as `round(idf * IDF_SCALE)` in a byte.
pub const IDF_SCALE: f32 = 28.0;
/// At most this many words of a ticket are read (a bound on the work per
/// call; a ticket's first words carry its meaning).
pub const MAX_WORDS: usize = 20_000;
/// Evidence is chosen among a ticket's first this many words.
pub const MAX_EVIDENCE_WORDS: usize = 2_000;

/// An image with no model in it: the magic and the capacity, then zeros.
pub const fn blank() -> [u8; MODEL_CAPACITY] {
    let mut image = [0u8; MODEL_CAPACITY];
    let mut i = 0;
    while i < MAGIC.len() {
        image[i] = MAGIC[i];
        i += 1;
    }
    let cap = (MODEL_CAPACITY as u32).to_le_bytes();
    let mut j = 0;
    while j < 4 {
        image[16 + j] = cap[j];
        j += 1;
    }
    image
}

/// One input of a ticket: free text, or a field and its value.
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    /// Words (the subject, a customer's message).
    Text(&'a str),
    /// A field with a value, e.g. `("category", "billing")`.
    Field(&'a str, &'a str),
}

/// What of a ticket a model reads: its subject, what the customer wrote,
/// its category and the customer's plan. The `learned` trigger and
/// `escalator learn` both call this, so they read the same things.
pub fn inputs<'a>(
    subject: &'a str,
    category: Option<&'a str>,
    plan: Option<&'a str>,
    customer_texts: impl Iterator<Item = &'a str>,
) -> Vec<Input<'a>> {
    let mut out = Vec::new();
    out.push(Input::Text(subject));
    out.extend(customer_texts.map(Input::Text));
    if let Some(c) = category {
        out.push(Input::Field("category", c));
    }
    if let Some(p) = plan {
        out.push(Input::Field("plan", p));
    }
    out
}

/// A ticket as features.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Features {
    /// The buckets it touches, sorted, each once.
    pub buckets: Vec<u32>,
    /// Each distinct word's bucket and the word (only when asked for: the
    /// evidence of a decision).
    pub words: Vec<(u32, String)>,
}

/// The IDF a byte of the image stands for.
pub fn idf_of(q: u8) -> f32 {
    f32::from(q) / IDF_SCALE
}

/// An IDF as the byte stored for it.
pub fn idf_byte(idf: f32) -> u8 {
    libm::roundf(idf * IDF_SCALE).clamp(0.0, 255.0) as u8
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv(seed: u64, bytes: &[u8]) -> u64 {
    let mut h = seed;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// splitmix64's finaliser: spreads FNV's low-entropy high bits.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn bucket(h: u64) -> u32 {
    (mix(h) >> (64 - BUCKETS_LOG2)) as u32
}

/// The features of a ticket's inputs; `words` keeps each distinct word for
/// evidence.
pub fn features(inputs: &[Input<'_>], keep_words: bool) -> Features {
    features_upto(inputs, keep_words, MAX_WORDS)
}

fn features_upto(inputs: &[Input<'_>], keep_words: bool, max_words: usize) -> Features {
    let mut buckets: Vec<u32> = Vec::new();
    let mut words: Vec<(u32, String)> = Vec::new();
    let mut token = String::new();
    let mut seen = 0usize;
    for input in inputs {
        match input {
            Input::Field(name, value) => {
                let h = fnv(fnv(fnv(FNV_OFFSET, b"f"), name.as_bytes()), b"=");
                let mut v = String::new();
                for c in value.chars() {
                    v.extend(c.to_lowercase());
                }
                buckets.push(bucket(fnv(h, v.as_bytes())));
            }
            Input::Text(text) => {
                let mut previous: Option<u64> = None;
                let mut chars = text.chars().peekable();
                while seen < max_words {
                    token.clear();
                    let mut letters = 0usize;
                    // Skip to the next word, then read it.
                    while chars.peek().is_some_and(|c| !c.is_alphanumeric()) {
                        chars.next();
                    }
                    while let Some(&c) = chars.peek() {
                        if !c.is_alphanumeric() {
                            break;
                        }
                        if c.is_ascii() {
                            token.push(c.to_ascii_lowercase());
                        } else {
                            token.extend(c.to_lowercase());
                        }
                        letters += 1;
                        chars.next();
                    }
                    if letters == 0 {
                        break;
                    }
                    if letters < 2 {
                        continue;
                    }
                    seen += 1;
                    let h = fnv(fnv(FNV_OFFSET, b"w"), token.as_bytes());
                    let b = bucket(h);
                    buckets.push(b);
                    if keep_words && words.len() < MAX_EVIDENCE_WORDS {
                        words.push((b, token.clone()));
                    }
                    if let Some(p) = previous {
                        buckets.push(bucket(
                            fnv(FNV_OFFSET, b"p") ^ p.rotate_left(17) ^ h.wrapping_mul(FNV_PRIME),
                        ));
                    }
                    previous = Some(h);
                }
            }
        }
    }
    buckets.sort_unstable();
    buckets.dedup();
    // Each word once (its first spelling), in the order of the buckets.
    words.sort_by_key(|(b, _)| *b);
    words.dedup_by_key(|(b, _)| *b);
    Features { buckets, words }
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn f32_at(bytes: &[u8], at: usize) -> f32 {
    f32::from_bits(u32_at(bytes, at))
}

/// A model read in place from its image.
#[derive(Debug, Clone, Copy)]
pub struct Model<'a> {
    idf: &'a [u8],
    weights: &'a [u8],
    /// Decide an urgent tier (critical or high) when their probabilities
    /// together reach this.
    pub urgent_threshold: f32,
    scale: f32,
    bias: [f32; CLASSES],
    prior: [f32; CLASSES],
    /// How many tickets it was fitted on.
    pub fitted_on: u32,
}

/// The values a model's payload holds besides its weights.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Head {
    /// See [`Model::urgent_threshold`].
    pub urgent_threshold: f32,
    /// A weight is its `i16` times this.
    pub scale: f32,
    /// Each class's bias.
    pub bias: [f32; CLASSES],
    /// Each class's log share of the fitting tickets times the number of
    /// classes. The weights are fitted with every class weighing the same
    /// in total (so rare urgent tickets shape them); adding these to the
    /// logits gives probabilities for the real mix of classes (a prior
    /// shift), which choose between critical and high, and medium and none.
    pub prior: [f32; CLASSES],
    /// How many tickets it was fitted on.
    pub fitted_on: u32,
}

impl<'a> Model<'a> {
    /// Read a model image: `Ok(None)` if it holds no model yet.
    ///
    /// Payload layout (little-endian), after the [`HEADER`]: version (u32),
    /// log2 of the buckets (u32), urgent threshold (f32), weight scale
    /// (f32), the classes' biases (4 × f32), tickets fitted on (u32), the
    /// classes' prior shifts (4 × f32, see [`Head::prior`]), 12 reserved
    /// bytes, each bucket's IDF (u8, see [`IDF_SCALE`]), then for
    /// each bucket its classes' weights (4 × i16).
    pub fn read(image: &'a [u8]) -> Result<Option<Model<'a>>, &'static str> {
        if image.len() < HEADER || image[..16] != MAGIC {
            return Err("not a model image");
        }
        let used = u32_at(image, 20) as usize;
        if used == 0 {
            return Ok(None);
        }
        if image.len() < MODEL_CAPACITY || used != MODEL_CAPACITY - HEADER {
            return Err("the model image is truncated");
        }
        let p = &image[HEADER..];
        if u32_at(p, 0) != VERSION || u32_at(p, 4) != BUCKETS_LOG2 {
            return Err("the model was written by another version of escalator learn");
        }
        Ok(Some(Model {
            urgent_threshold: f32_at(p, 8),
            scale: f32_at(p, 12),
            bias: [f32_at(p, 16), f32_at(p, 20), f32_at(p, 24), f32_at(p, 28)],
            fitted_on: u32_at(p, 32),
            prior: [f32_at(p, 36), f32_at(p, 40), f32_at(p, 44), f32_at(p, 48)],
            idf: &p[PAYLOAD_HEAD..PAYLOAD_HEAD + BUCKETS],
            weights: &p[PAYLOAD_HEAD + BUCKETS..PAYLOAD_HEAD + BUCKETS + BUCKETS * CLASSES * 2],
        }))
    }

    /// A bucket's weight for a class.
    pub fn weight(&self, bucket: u32, class: usize) -> f32 {
        let at = (bucket as usize * CLASSES + class) * 2;
        f32::from(i16::from_le_bytes([self.weights[at], self.weights[at + 1]])) * self.scale
    }

    /// A bucket's IDF (0: no fitted ticket touched it).
    pub fn idf(&self, bucket: u32) -> f32 {
        idf_of(self.idf[bucket as usize])
    }

    /// The classes' probabilities for a ticket's features, each class
    /// weighing the same (what the urgent threshold applies to).
    pub fn probabilities(&self, f: &Features) -> [f32; CLASSES] {
        let mut sums = [0f32; CLASSES];
        let mut norm = 0f32;
        for &b in &f.buckets {
            let q = self.idf[b as usize];
            if q == 0 {
                continue;
            }
            let idf = idf_of(q);
            norm += idf * idf;
            let at = b as usize * CLASSES * 2;
            for (c, s) in sums.iter_mut().enumerate() {
                let i = at + c * 2;
                *s += idf * f32::from(i16::from_le_bytes([self.weights[i], self.weights[i + 1]]));
            }
        }
        let scale = if norm > 0.0 {
            self.scale / libm::sqrtf(norm)
        } else {
            0.0
        };
        let mut logits = [0f32; CLASSES];
        for c in 0..CLASSES {
            logits[c] = self.bias[c] + sums[c] * scale;
        }
        softmax(logits)
    }

    /// Probabilities for the real mix of classes (see [`Head::prior`]).
    pub fn shifted(&self, p: &[f32; CLASSES]) -> [f32; CLASSES] {
        let mut out = [0f32; CLASSES];
        let mut sum = 0.0;
        for c in 0..CLASSES {
            out[c] = p[c] * libm::expf(self.prior[c]);
            sum += out[c];
        }
        if sum > 0.0 {
            for o in &mut out {
                *o /= sum;
            }
        }
        out
    }

    /// The class decided for these probabilities (from
    /// [`Model::probabilities`]): an urgent tier when critical and high
    /// together reach the threshold, else medium or none; within the pair,
    /// the likelier for the real mix of classes.
    pub fn decide(&self, p: &[f32; CLASSES], threshold: f32) -> usize {
        let real = self.shifted(p);
        if p[0] + p[1] >= threshold {
            if real[0] >= real[1] { 0 } else { 1 }
        } else if real[2] >= real[3] {
            2
        } else {
            3
        }
    }

    /// The words that weighed most towards `class`, heaviest first, at most
    /// `n`: each word's IDF times how much more its weight favours `class`
    /// than the classes' mean (so words every class shares do not count).
    pub fn evidence(&self, f: &Features, class: usize, n: usize) -> Vec<String> {
        let mut w: Vec<(f32, &str)> = f
            .words
            .iter()
            .map(|(b, word)| {
                let mean = (0..CLASSES).map(|c| self.weight(*b, c)).sum::<f32>() / CLASSES as f32;
                (
                    self.idf(*b) * (self.weight(*b, class) - mean),
                    word.as_str(),
                )
            })
            .filter(|(w, _)| *w > 0.0)
            .collect();
        w.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
        w.into_iter()
            .take(n)
            .map(|(_, s)| String::from(s))
            .collect()
    }
}

/// Softmax over the logits.
pub fn softmax(logits: [f32; CLASSES]) -> [f32; CLASSES] {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut out = [0f32; CLASSES];
    let mut sum = 0.0;
    for c in 0..CLASSES {
        out[c] = libm::expf(logits[c] - max);
        sum += out[c];
    }
    for o in &mut out {
        *o /= sum;
    }
    out
}

/// Write a model into an image made by [`blank`] (or a copy of one):
/// each bucket's IDF byte, and `weights[bucket * CLASSES + class]` as
/// fitted, quantised to `i16`.
pub fn write(
    image: &mut [u8],
    head: &Head,
    idf: &[u8],
    weights: &[f32],
) -> Result<(), &'static str> {
    if image.len() < MODEL_CAPACITY || image[..16] != MAGIC {
        return Err("not a model image");
    }
    if u32_at(image, 16) as usize != MODEL_CAPACITY {
        return Err("the image has another capacity than this version's models");
    }
    if weights.len() != BUCKETS * CLASSES || idf.len() != BUCKETS {
        return Err("wrong number of weights");
    }
    let max = weights.iter().fold(0f32, |m, w| m.max(w.abs()));
    let scale = if max > 0.0 { max / 32767.0 } else { 1.0 };
    let used = (MODEL_CAPACITY - HEADER) as u32;
    image[20..24].copy_from_slice(&used.to_le_bytes());
    let p = &mut image[HEADER..MODEL_CAPACITY];
    p.fill(0);
    p[0..4].copy_from_slice(&VERSION.to_le_bytes());
    p[4..8].copy_from_slice(&BUCKETS_LOG2.to_le_bytes());
    p[8..12].copy_from_slice(&head.urgent_threshold.to_le_bytes());
    p[12..16].copy_from_slice(&scale.to_le_bytes());
    for c in 0..CLASSES {
        p[16 + c * 4..20 + c * 4].copy_from_slice(&head.bias[c].to_le_bytes());
    }
    p[32..36].copy_from_slice(&head.fitted_on.to_le_bytes());
    for c in 0..CLASSES {
        p[36 + c * 4..40 + c * 4].copy_from_slice(&head.prior[c].to_le_bytes());
    }
    p[PAYLOAD_HEAD..PAYLOAD_HEAD + BUCKETS].copy_from_slice(idf);
    for (i, w) in weights.iter().enumerate() {
        let q = libm::roundf(w / scale).clamp(-32767.0, 32767.0) as i16;
        let at = PAYLOAD_HEAD + BUCKETS + i * 2;
        p[at..at + 2].copy_from_slice(&q.to_le_bytes());
    }
    Ok(())
}

/// A hand-made model image for tests: each text's buckets (its words and
/// pairs) get IDF 1 and `weight` for `class`; every other bucket is
/// unknown.
pub fn hand_made(rules: &[(&str, usize, f32)], bias: [f32; CLASSES], fitted_on: u32) -> Vec<u8> {
    let mut image = blank().to_vec();
    let mut weights = alloc::vec![0f32; BUCKETS * CLASSES];
    let mut idf = alloc::vec![0u8; BUCKETS];
    for (text, class, weight) in rules {
        for b in features(&[Input::Text(text)], false).buckets {
            weights[b as usize * CLASSES + class] = *weight;
            idf[b as usize] = idf_byte(1.0);
        }
    }
    let head = Head {
        urgent_threshold: 0.5,
        scale: 0.0,
        bias,
        prior: [0.0; CLASSES],
        fitted_on,
    };
    // The sizes are this module's own: writing cannot fail.
    let _ = write(&mut image, &head, &idf, &weights);
    image
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_pairs_are_hashed_the_same_way_every_time() {
        let a = features(&[Input::Text("Data LOSS on the NameNode!")], true);
        let b = features(&[Input::Text("data loss on the namenode")], true);
        assert_eq!(a, b, "case and punctuation do not change features");
        // 5 words, 4 pairs; "a" would be too short to count.
        assert_eq!(a.buckets.len(), 9);
        let mut words: Vec<&str> = a.words.iter().map(|(_, w)| w.as_str()).collect();
        words.sort_unstable();
        assert_eq!(words, ["data", "loss", "namenode", "on", "the"]);
        let c = features(&[Input::Text("loss data")], false);
        assert!(
            !c.buckets.iter().all(|x| a.buckets.contains(x)),
            "word order makes other pairs"
        );
        let f = features(&[Input::Field("category", "Bug")], false);
        assert_eq!(f, features(&[Input::Field("category", "bug")], false));
        assert_ne!(f, features(&[Input::Text("category bug")], false));
    }

    #[test]
    fn a_written_model_reads_back_and_scores_as_its_weights_say() {
        let blank_image = blank();
        assert!(
            Model::read(&blank_image).unwrap().is_none(),
            "a blank image"
        );
        let f = features(&[Input::Text("cluster down")], true);
        let mut image = hand_made(&[("cluster down", 0, 2.0)], [0.0, 0.0, 0.5, 1.0], 7);
        let m = Model::read(&image).unwrap().unwrap();
        assert_eq!(m.fitted_on, 7);
        assert!((m.weight(f.buckets[0], 0) - 2.0).abs() < 1e-3);
        let p = m.probabilities(&f);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        assert_eq!(m.decide(&p, m.urgent_threshold), 0, "{p:?}");
        assert_eq!(m.evidence(&f, 0, 1), ["cluster"]);
        let other = features(&[Input::Text("typo in docs")], false);
        assert_eq!(m.decide(&m.probabilities(&other), 0.5), 3);
        image[HEADER] = 9;
        assert!(Model::read(&image).is_err(), "another version is refused");
    }

    #[test]
    fn a_huge_text_is_read_only_up_to_the_bound() {
        let f = features_upto(&[Input::Text("aa bb cc dd ee ff gg")], true, 5);
        assert_eq!(f.buckets.len(), 9, "5 words and their 4 pairs");
        assert_eq!(f.words.len(), 5);
        let ff = features(&[Input::Text("ff")], false);
        assert!(!f.buckets.contains(&ff.buckets[0]), "words past the bound");
    }
}
