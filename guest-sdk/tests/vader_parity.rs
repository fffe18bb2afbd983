//! The VADER port against the reference implementation (vaderSentiment
//! 3.3.2) on every message of the real Twitter customer-care conversations
//! in `../shared/data/twitter_care_dev.jsonl`. The reference scores come
//! from `tools/vader_reference.py`.

use std::collections::HashMap;
use std::path::Path;

#[test]
fn compound_scores_agree_with_the_reference_on_real_conversations() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let data = root.join("../../shared/data/twitter_care_dev.jsonl");
    let text = std::fs::read_to_string(&data).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (the shared data sets sit beside the repository)",
            data.display()
        )
    });
    let reference: HashMap<(usize, usize), f64> = include_str!("data/vader_reference.tsv")
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (
                (f[0].parse().unwrap(), f[1].parse().unwrap()),
                f[2].parse().unwrap(),
            )
        })
        .collect();

    let mut compared = 0;
    let mut agree = 0;
    let mut exact = 0;
    let mut worst: Vec<(f64, String, f64, f64)> = Vec::new();
    for (c, line) in text.lines().enumerate() {
        let conversation: serde_json::Value = serde_json::from_str(line).unwrap();
        let turns = conversation["dialogContent"].as_array().unwrap();
        for (m, turn) in turns.iter().enumerate() {
            let message = turn["message"].as_str().unwrap();
            let expected = reference[&(c, m)];
            let got = escalator_guest::sentiment::compound(message);
            compared += 1;
            let diff = (got - expected).abs();
            exact += usize::from(diff < 1e-9);
            if diff <= 0.01 {
                agree += 1;
            } else {
                worst.push((diff, message.chars().take(80).collect(), got, expected));
            }
        }
    }
    assert_eq!(
        compared,
        reference.len(),
        "every reference score was compared"
    );
    let share = agree as f64 / compared as f64;
    worst.sort_by(|a, b| b.0.total_cmp(&a.0));
    eprintln!(
        "VADER parity: {agree}/{compared} messages within 0.01 ({:.2}%), {exact} identical to 4 decimals",
        share * 100.0
    );
    for (diff, text, got, expected) in worst.iter().take(10) {
        eprintln!("  off by {diff:.4}: ours {got}, reference {expected}: {text:?}");
    }
    assert!(share >= 0.99, "only {:.2}% within 0.01", share * 100.0);
}
