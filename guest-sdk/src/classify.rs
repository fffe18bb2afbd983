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
//! its layout) with one `u8` IDF and two `i16` weights (one per head) per
//! bucket and class, so a fresh
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
/// The whole image: the header, the payload's head, a byte of IDF and two
/// heads' four `i16` weights per bucket.
pub const MODEL_CAPACITY: usize = HEADER + PAYLOAD_HEAD + BUCKETS + BUCKETS * CLASSES * 2 * 2;
/// The payload format's version (4: two heads).
pub const VERSION: u32 = 4;
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

/// [`blank`] on the heap (the image is too large for a thread's stack
/// where nothing optimises the copy away).
pub fn blank_vec() -> Vec<u8> {
    let mut image = alloc::vec![0u8; MODEL_CAPACITY];
    image[..16].copy_from_slice(&MAGIC);
    image[16..20].copy_from_slice(&(MODEL_CAPACITY as u32).to_le_bytes());
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

/// One of a model's two heads: four classes' weights over the same
/// features, read in place.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeadParams {
    /// A weight is its `i16` times this.
    pub scale: f32,
    /// Each class's bias.
    pub bias: [f32; CLASSES],
}

/// Which head (see [`Model`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// Fitted with every class weighing the same in total, so the rare
    /// urgent tickets shape it: its critical + high probability ranks
    /// tickets by urgency, and the urgent threshold applies to it.
    Urgency,
    /// Fitted on the real mix of classes: its probabilities are the
    /// likeliest tier, and choose between critical and high, and between
    /// medium and none.
    Class,
}

impl Which {
    /// Where the head's weights start among a bucket's (in `i16`s).
    fn first(self) -> usize {
        match self {
            Which::Urgency => 0,
            Which::Class => CLASSES,
        }
    }
}

/// A ticket's probabilities under both heads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scores {
    /// The urgency head's (each class weighing the same).
    pub urgency: [f32; CLASSES],
    /// The class head's, for the real mix of classes (calibrated by the
    /// temperature).
    pub class: [f32; CLASSES],
}

impl Scores {
    /// Critical + high under the urgency head: what the threshold applies
    /// to.
    pub fn urgent(&self) -> f32 {
        self.urgency[0] + self.urgency[1]
    }

    /// The class head's likeliest class (see [`likeliest`]).
    pub fn likeliest(&self) -> usize {
        likeliest(&self.class)
    }
}

/// The likeliest class of probabilities (a tie goes to the more urgent
/// class).
pub fn likeliest(p: &[f32; CLASSES]) -> usize {
    (0..CLASSES)
        .max_by(|a, b| p[*a].total_cmp(&p[*b]).then(b.cmp(a)))
        .unwrap_or(CLASSES - 1)
}

/// A model read in place from its image: two linear heads over the same
/// features (see [`Which`]). One objective cannot serve both uses: the
/// weights that rank rare urgent tickets best are fitted with the classes
/// reweighted and a strong penalty, and their likeliest class is always the
/// commonest; the weights that name the likeliest class best are fitted
/// on the real mix and rank urgent tickets worse. `escalator learn`
/// chooses each head's penalty by cross-validation for its own use.
#[derive(Debug, Clone, Copy)]
pub struct Model<'a> {
    idf: &'a [u8],
    weights: &'a [u8],
    /// Decide an urgent tier (critical or high) when the urgency head's
    /// critical + high probability reaches this.
    pub urgent_threshold: f32,
    urgency: HeadParams,
    class: HeadParams,
    temperature: f32,
    /// How many tickets it was fitted on.
    pub fitted_on: u32,
}

/// The values a model's payload holds besides its weights.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Head {
    /// See [`Model::urgent_threshold`].
    pub urgent_threshold: f32,
    /// The urgency head's biases.
    pub urgency_bias: [f32; CLASSES],
    /// The class head's biases.
    pub class_bias: [f32; CLASSES],
    /// What the class head's logits are divided by (temperature scaling,
    /// fitted on out-of-fold predictions so its probabilities are
    /// calibrated; it does not change which class is likeliest). 1: as
    /// fitted.
    pub temperature: f32,
    /// How many tickets it was fitted on.
    pub fitted_on: u32,
}

/// The weights of one bucket's classes in both heads: 4 × i16 urgency,
/// then 4 × i16 class.
const BUCKET_BYTES: usize = CLASSES * 2 * 2;

/// Where the payload's values lie ([`Model::read`] gives the layout).
mod field {
    pub const VERSION: usize = 0;
    pub const BUCKETS_LOG2: usize = 4;
    pub const URGENT_THRESHOLD: usize = 8;
    pub const FITTED_ON: usize = 12;
    pub const URGENCY_SCALE: usize = 16;
    pub const URGENCY_BIAS: usize = 20;
    pub const CLASS_SCALE: usize = 36;
    pub const CLASS_BIAS: usize = 40;
    pub const TEMPERATURE: usize = 56;
}

impl<'a> Model<'a> {
    /// Read a model image: `Ok(None)` if it holds no model yet.
    ///
    /// The payload: version (u32), log2 of the buckets (u32), urgent
    /// threshold (f32), tickets fitted on (u32), the urgency head's weight
    /// scale (f32) and biases (4 × f32), the class head's weight scale
    /// (f32) and biases (4 × f32), the class head's temperature (f32),
    /// reserved bytes up to [`PAYLOAD_HEAD`], each bucket's IDF (u8, see
    /// [`IDF_SCALE`]), then for each bucket its classes' weights in the
    /// urgency head (4 × i16), then in the class head (4 × i16).
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
        if u32_at(p, field::VERSION) != VERSION || u32_at(p, field::BUCKETS_LOG2) != BUCKETS_LOG2 {
            return Err("the model was written by another version of escalator learn");
        }
        let four = |at: usize| {
            [
                f32_at(p, at),
                f32_at(p, at + 4),
                f32_at(p, at + 8),
                f32_at(p, at + 12),
            ]
        };
        let temperature = f32_at(p, field::TEMPERATURE);
        if !(temperature.is_finite() && temperature > 0.0) {
            return Err("the model's temperature is not a positive number");
        }
        Ok(Some(Model {
            urgent_threshold: f32_at(p, field::URGENT_THRESHOLD),
            fitted_on: u32_at(p, field::FITTED_ON),
            urgency: HeadParams {
                scale: f32_at(p, field::URGENCY_SCALE),
                bias: four(field::URGENCY_BIAS),
            },
            class: HeadParams {
                scale: f32_at(p, field::CLASS_SCALE),
                bias: four(field::CLASS_BIAS),
            },
            temperature,
            idf: &p[PAYLOAD_HEAD..PAYLOAD_HEAD + BUCKETS],
            weights: &p[PAYLOAD_HEAD + BUCKETS..PAYLOAD_HEAD + BUCKETS + BUCKETS * BUCKET_BYTES],
        }))
    }

    /// A bucket's weight for a class in a head.
    pub fn weight(&self, bucket: u32, which: Which, class: usize) -> f32 {
        let scale = match which {
            Which::Urgency => self.urgency.scale,
            Which::Class => self.class.scale,
        };
        let i = bucket as usize * BUCKET_BYTES + (which.first() + class) * 2;
        f32::from(i16::from_le_bytes([self.weights[i], self.weights[i + 1]])) * scale
    }

    /// A bucket's IDF (0: no fitted ticket touched it).
    pub fn idf(&self, bucket: u32) -> f32 {
        idf_of(self.idf[bucket as usize])
    }

    /// A ticket's probabilities under both heads (one pass over its
    /// buckets).
    pub fn scores(&self, f: &Features) -> Scores {
        let mut sums = [0f32; 2 * CLASSES];
        let mut norm = 0f32;
        for &b in &f.buckets {
            let q = self.idf[b as usize];
            if q == 0 {
                continue;
            }
            let idf = idf_of(q);
            norm += idf * idf;
            let at = b as usize * BUCKET_BYTES;
            for (k, s) in sums.iter_mut().enumerate() {
                let i = at + k * 2;
                *s += idf * f32::from(i16::from_le_bytes([self.weights[i], self.weights[i + 1]]));
            }
        }
        let unit = if norm > 0.0 {
            1.0 / libm::sqrtf(norm)
        } else {
            0.0
        };
        let mut urgency = [0f32; CLASSES];
        let mut class = [0f32; CLASSES];
        for c in 0..CLASSES {
            urgency[c] = self.urgency.bias[c] + sums[c] * self.urgency.scale * unit;
            class[c] = (self.class.bias[c] + sums[CLASSES + c] * self.class.scale * unit)
                / self.temperature;
        }
        Scores {
            urgency: softmax(urgency),
            class: softmax(class),
        }
    }

    /// The class decided for a ticket's scores: an urgent tier when the
    /// urgency head's critical + high reaches the threshold, else medium or
    /// none; within the pair, the likelier under the class head.
    pub fn decide(&self, s: &Scores, threshold: f32) -> usize {
        let p = &s.class;
        if s.urgent() >= threshold {
            if p[0] >= p[1] { 0 } else { 1 }
        } else if p[2] >= p[3] {
            2
        } else {
            3
        }
    }

    /// The words that weighed most towards `class` in a head, heaviest
    /// first, at most `n`: each word's IDF times how much more its weight
    /// favours `class` than the classes' mean (so words every class shares
    /// do not count).
    pub fn evidence(&self, f: &Features, which: Which, class: usize, n: usize) -> Vec<String> {
        let mut w: Vec<(f32, &str)> = f
            .words
            .iter()
            .map(|(b, word)| {
                let mean =
                    (0..CLASSES).map(|c| self.weight(*b, which, c)).sum::<f32>() / CLASSES as f32;
                (
                    self.idf(*b) * (self.weight(*b, which, class) - mean),
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
/// each bucket's IDF byte, and each head's `weights[bucket * CLASSES +
/// class]` as fitted, quantised to `i16` (each head at its own scale).
pub fn write(
    image: &mut [u8],
    head: &Head,
    idf: &[u8],
    urgency: &[f32],
    class: &[f32],
) -> Result<(), &'static str> {
    if image.len() < MODEL_CAPACITY || image[..16] != MAGIC {
        return Err("not a model image");
    }
    if u32_at(image, 16) as usize != MODEL_CAPACITY {
        return Err("the image has another capacity than this version's models");
    }
    if urgency.len() != BUCKETS * CLASSES
        || class.len() != BUCKETS * CLASSES
        || idf.len() != BUCKETS
    {
        return Err("wrong number of weights");
    }
    if !(head.temperature.is_finite() && head.temperature > 0.0) {
        return Err("the temperature must be a positive number");
    }
    let scale_of = |weights: &[f32]| {
        let max = weights.iter().fold(0f32, |m, w| m.max(w.abs()));
        if max > 0.0 { max / 32767.0 } else { 1.0 }
    };
    let (urgency_scale, class_scale) = (scale_of(urgency), scale_of(class));
    let used = (MODEL_CAPACITY - HEADER) as u32;
    image[20..24].copy_from_slice(&used.to_le_bytes());
    let p = &mut image[HEADER..MODEL_CAPACITY];
    p.fill(0);
    let mut put = |at: usize, bytes: [u8; 4]| p[at..at + 4].copy_from_slice(&bytes);
    put(field::VERSION, VERSION.to_le_bytes());
    put(field::BUCKETS_LOG2, BUCKETS_LOG2.to_le_bytes());
    put(field::URGENT_THRESHOLD, head.urgent_threshold.to_le_bytes());
    put(field::FITTED_ON, head.fitted_on.to_le_bytes());
    put(field::URGENCY_SCALE, urgency_scale.to_le_bytes());
    put(field::CLASS_SCALE, class_scale.to_le_bytes());
    for c in 0..CLASSES {
        put(
            field::URGENCY_BIAS + c * 4,
            head.urgency_bias[c].to_le_bytes(),
        );
        put(field::CLASS_BIAS + c * 4, head.class_bias[c].to_le_bytes());
    }
    put(field::TEMPERATURE, head.temperature.to_le_bytes());
    p[PAYLOAD_HEAD..PAYLOAD_HEAD + BUCKETS].copy_from_slice(idf);
    let weights = &mut p[PAYLOAD_HEAD + BUCKETS..];
    for (which, w, scale) in [
        (Which::Urgency, urgency, urgency_scale),
        (Which::Class, class, class_scale),
    ] {
        for (i, w) in w.iter().enumerate() {
            let q = libm::roundf(w / scale).clamp(-32767.0, 32767.0) as i16;
            let i = (i / CLASSES) * BUCKET_BYTES + (which.first() + i % CLASSES) * 2;
            weights[i..i + 2].copy_from_slice(&q.to_le_bytes());
        }
    }
    Ok(())
}

/// A hand-made model image for tests: each text's buckets (its words and
/// pairs) get IDF 1 and `weight` for `class` in both heads; every other
/// bucket is unknown.
pub fn hand_made(rules: &[(&str, usize, f32)], bias: [f32; CLASSES], fitted_on: u32) -> Vec<u8> {
    let mut image = blank_vec();
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
        urgency_bias: bias,
        class_bias: bias,
        temperature: 1.0,
        fitted_on,
    };
    // The sizes are this module's own: writing cannot fail.
    let _ = write(&mut image, &head, &idf, &weights, &weights);
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
        let blank_image = blank_vec();
        assert!(
            Model::read(&blank_image).unwrap().is_none(),
            "a blank image"
        );
        static BLANK: [u8; MODEL_CAPACITY] = blank();
        assert!(BLANK[..] == blank_image[..], "the same blank, on the heap");
        let f = features(&[Input::Text("cluster down")], true);
        let mut image = hand_made(&[("cluster down", 0, 2.0)], [0.0, 0.0, 0.5, 1.0], 7);
        let m = Model::read(&image).unwrap().unwrap();
        assert_eq!(m.fitted_on, 7);
        for which in [Which::Urgency, Which::Class] {
            assert!((m.weight(f.buckets[0], which, 0) - 2.0).abs() < 1e-3);
        }
        let s = m.scores(&f);
        assert!((s.urgency.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        assert!((s.class.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        assert_eq!(m.decide(&s, m.urgent_threshold), 0, "{s:?}");
        assert_eq!(s.likeliest(), 0, "{s:?}");
        assert_eq!(m.evidence(&f, Which::Urgency, 0, 1), ["cluster"]);
        let other = features(&[Input::Text("typo in docs")], false);
        assert_eq!(m.decide(&m.scores(&other), 0.5), 3);
        image[HEADER] = 9;
        assert!(Model::read(&image).is_err(), "another version is refused");
    }

    /// A model whose heads disagree: the urgency head says whether a ticket
    /// is urgent, the class head which tier within the pair and which is
    /// likeliest; each head is quantised at its own scale, and the
    /// temperature flattens the class head without changing its order.
    #[test]
    fn the_urgency_head_decides_urgent_and_the_class_head_the_tier() {
        let f = features(&[Input::Text("disk full")], true);
        let mut urgency = alloc::vec![0f32; BUCKETS * CLASSES];
        let mut class = alloc::vec![0f32; BUCKETS * CLASSES];
        let mut idf = alloc::vec![0u8; BUCKETS];
        for &b in &f.buckets {
            idf[b as usize] = idf_byte(1.0);
            urgency[b as usize * CLASSES] = 5.0;
            class[b as usize * CLASSES + 1] = 0.3;
            class[b as usize * CLASSES + 2] = 0.2;
        }
        let write_with = |temperature: f32| {
            let mut image = blank_vec();
            let head = Head {
                urgent_threshold: 0.5,
                urgency_bias: [0.0; CLASSES],
                class_bias: [0.0, 0.0, 0.0, 0.0],
                temperature,
                fitted_on: 3,
            };
            write(&mut image, &head, &idf, &urgency, &class).map(|()| image)
        };
        let image = write_with(1.0).unwrap();
        let m = Model::read(&image).unwrap().unwrap();
        let b = f.buckets[0];
        assert!((m.weight(b, Which::Urgency, 0) - 5.0).abs() < 1e-3);
        assert!(
            (m.weight(b, Which::Class, 1) - 0.3).abs() < 1e-4,
            "the small head keeps its precision"
        );
        let s = m.scores(&f);
        assert!(s.urgent() > 0.99, "{s:?}");
        assert_eq!(m.decide(&s, 0.5), 1, "high: the class head's choice");
        assert_eq!(s.likeliest(), 1);
        assert_eq!(m.evidence(&f, Which::Urgency, 0, 1), ["disk"]);
        assert!(m.evidence(&f, Which::Class, 0, 1).is_empty());
        assert_eq!(
            m.decide(&s, 0.9999),
            2,
            "below the threshold: medium over none"
        );

        let hot = write_with(4.0).unwrap();
        let h = Model::read(&hot).unwrap().unwrap().scores(&f);
        assert_eq!(h.likeliest(), 1);
        assert!(h.class[1] < s.class[1] && h.class[1] > 0.25, "{h:?}");
        assert_eq!(h.urgency, s.urgency, "the urgency head is not tempered");
        for t in [0.0, -1.0, f32::NAN] {
            assert!(write_with(t).is_err(), "temperature {t}");
        }
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
