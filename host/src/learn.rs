//! `escalator learn`: fit a text classifier on labelled history and write
//! it as a plugin directory for the `learned` trigger.
//!
//! The model is multinomial logistic regression on hashed features (words,
//! word pairs, category and plan: [`escalator_guest::classify`], the same
//! code the trigger runs in wasm), the linear model text classification
//! has long started from: it is fast to fit, small, and its weights say
//! which words moved a decision. It has two heads over the same features
//! ([`classify::Model`]): the urgency head, with classes weighted by their
//! inverse frequency (urgent tickets are rare), ranks tickets by urgency;
//! the class head, fitted on the real mix, names the likeliest tier.
//! Each fit is L-BFGS from zero, single-threaded, with no randomness; the
//! cross-validation's fits run on all cores, their results kept in a fixed
//! order, so the same data and settings give the same model byte for byte.
//!
//! Honest numbers: the history is split by time. Everything chosen is
//! chosen on the earlier part alone, by cross-validation over consecutive
//! time blocks: the urgency head's regularisation (for precision at the
//! recall the operator asks for) and the threshold that reaches that
//! recall; the class head's regularisation (for agreement) and the
//! temperature that calibrates its probabilities. Both heads are then
//! fitted on the whole earlier part and reported on the later part, which
//! they never saw.

use crate::model::{AuthorKind, Ticket, Tier};
use crate::replay::Case;
use anyhow::{Context as _, Result, bail};
use chrono::{DateTime, Utc};
use escalator_guest::classify::{self, CLASSES, Features, Head, LABELS, Model};
use serde::Serialize;
use std::path::Path;

/// One labelled ticket, as features.
#[derive(Debug, Clone)]
pub struct Example {
    /// The position of its case in the cases it was made from.
    pub case: usize,
    /// The ticket's id.
    pub id: String,
    /// When it was created.
    pub at: DateTime<Utc>,
    /// Its features.
    pub features: Features,
    /// Its class (an index into [`LABELS`]).
    pub label: usize,
}

/// The class of an expected tier: low and no escalation are both `none`
/// (low tickets stay with the AI agent).
pub fn class_of(expected: Option<Tier>) -> usize {
    match expected {
        Some(Tier::Critical) => 0,
        Some(Tier::High) => 1,
        Some(Tier::Medium) => 2,
        Some(Tier::Low) | None => 3,
    }
}

/// What a model reads of a ticket (as the `learned` trigger reads it).
pub fn features(t: &Ticket, keep_words: bool) -> Features {
    let inputs = classify::inputs(
        &t.subject,
        t.category.as_deref(),
        t.customer.as_ref().map(|c| c.plan.as_str()),
        t.messages
            .iter()
            .filter(|m| m.author == AuthorKind::Customer)
            .map(|m| m.body.as_str()),
    );
    classify::features(&inputs, keep_words)
}

/// The labelled cases as examples, oldest first (ties by id).
pub fn examples(cases: &[Case]) -> Vec<Example> {
    let mut out: Vec<Example> = cases
        .iter()
        .enumerate()
        .filter_map(|(case, c)| {
            let expected = c.expected?;
            Some(Example {
                case,
                id: c.ticket.id.clone(),
                at: c.ticket.created_at,
                features: features(&c.ticket, false),
                label: class_of(expected),
            })
        })
        .collect();
    out.sort_by(|a, b| a.at.cmp(&b.at).then_with(|| a.id.cmp(&b.id)));
    out
}

/// How to fit.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The urgency head's inverse regularisation strengths to choose from
    /// (as scikit-learn's `C`: the objective is `C` times the
    /// class-weighted log loss plus half the squared weights); one value:
    /// no choice.
    pub c: Vec<f64>,
    /// The class head's (its log loss weighs every ticket the same).
    pub class_c: Vec<f64>,
    /// L-BFGS iterations at most.
    pub iterations: usize,
    /// The recall of urgent tickets (critical and high) the threshold is
    /// chosen for.
    pub urgent_recall: f64,
    /// Consecutive time blocks of the cross-validation.
    pub folds: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            c: vec![0.3, 1.0, 3.0],
            class_c: vec![0.3, 1.0, 3.0, 10.0, 30.0, 100.0],
            iterations: 300,
            urgent_recall: 0.85,
            folds: 5,
        }
    }
}

pub use escalator_guest::fit::{Fitted, Weighting, fit_examples};

/// Fit one head on `train` (see [`escalator_guest::fit`]).
pub fn fit(train: &[&Example], c: f64, iterations: usize, weighting: Weighting) -> Fitted {
    let pairs: Vec<(&Features, usize)> = train.iter().map(|e| (&e.features, e.label)).collect();
    fit_examples(&pairs, c, iterations, weighting)
}

/// Two heads fitted on the same tickets in a model image (quantised as the
/// trigger reads it).
pub fn image(
    urgency: &Fitted,
    class: &Fitted,
    urgent_threshold: f32,
    temperature: f32,
    fitted_on: usize,
) -> Result<Vec<u8>> {
    if urgency.idf != class.idf {
        bail!("the two heads were fitted on different tickets");
    }
    let mut image = classify::blank_vec();
    let head = Head {
        urgent_threshold,
        urgency_bias: urgency.bias,
        class_bias: class.bias,
        temperature,
        fitted_on: fitted_on as u32,
    };
    classify::write(
        &mut image,
        &head,
        &urgency.idf,
        &urgency.weights,
        &class.weights,
    )
    .map_err(anyhow::Error::msg)?;
    Ok(image)
}

/// The temperature that makes out-of-fold probabilities likeliest for
/// their labels (temperature scaling, Guo et al. 2017): the log loss is
/// convex in its inverse, so a golden-section search over 1/64 .. 64 finds
/// it. Deterministic.
fn temperature(oof: &[[f32; CLASSES]], labels: &[usize]) -> f32 {
    let loss = |t: f64| -> f64 {
        oof.iter()
            .zip(labels)
            .map(|(p, &y)| {
                let logits = p.map(|v| f64::from(v.max(1e-30)).ln() / t);
                let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let sum: f64 = logits.iter().map(|l| (l - max).exp()).sum();
                max + sum.ln() - logits[y]
            })
            .sum()
    };
    let golden = (5f64.sqrt() - 1.0) / 2.0;
    let (mut lo, mut hi) = ((1.0f64 / 64.0).ln(), 64f64.ln());
    let mut a = hi - golden * (hi - lo);
    let mut b = lo + golden * (hi - lo);
    let (mut fa, mut fb) = (loss(a.exp()), loss(b.exp()));
    for _ in 0..60 {
        if fa <= fb {
            hi = b;
            b = a;
            fb = fa;
            a = hi - golden * (hi - lo);
            fa = loss(a.exp());
        } else {
            lo = a;
            a = b;
            fa = fb;
            b = lo + golden * (hi - lo);
            fb = loss(b.exp());
        }
    }
    ((lo + hi) / 2.0).exp() as f32
}

/// The mean log loss of probabilities for their labels.
fn log_loss(p: &[[f32; CLASSES]], labels: &[usize]) -> f64 {
    let sum: f64 = p
        .iter()
        .zip(labels)
        .map(|(p, &y)| -f64::from(p[y].max(1e-30)).ln())
        .sum();
    sum / labels.len().max(1) as f64
}

/// The share of probabilities whose likeliest class is their label.
fn accuracy(p: &[[f32; CLASSES]], labels: &[usize]) -> f64 {
    let hits = p
        .iter()
        .zip(labels)
        .filter(|(p, y)| classify::likeliest(p) == **y)
        .count();
    hits as f64 / labels.len().max(1) as f64
}

/// The highest threshold at which at least `recall` of the urgent examples
/// score at or above it.
pub fn threshold_for(scores: &[f32], urgent: &[bool], recall: f64) -> f32 {
    let mut u: Vec<f32> = scores
        .iter()
        .zip(urgent)
        .filter(|(_, u)| **u)
        .map(|(s, _)| *s)
        .collect();
    if u.is_empty() {
        return 0.5;
    }
    u.sort_by(|a, b| b.total_cmp(a));
    let need = ((recall * u.len() as f64).ceil() as usize).clamp(1, u.len());
    u[need - 1]
}

/// Precision when the threshold is set for `recall` of the urgent ones.
pub fn precision_at_recall(scores: &[f32], urgent: &[bool], recall: f64) -> f64 {
    let t = threshold_for(scores, urgent, recall);
    let flagged = scores.iter().filter(|s| **s >= t).count();
    let hits = scores
        .iter()
        .zip(urgent)
        .filter(|(s, u)| **s >= t && **u)
        .count();
    if flagged == 0 {
        0.0
    } else {
        hits as f64 / flagged as f64
    }
}

/// Per-class precision and recall.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ClassReport {
    /// The class.
    pub class: &'static str,
    /// Tickets with this label.
    pub support: usize,
    /// Of those decided this class, the share with this label.
    pub precision: f64,
    /// Of those with this label, the share decided this class.
    pub recall: f64,
}

/// How a model did on tickets it was not fitted on.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Evaluation {
    /// Tickets evaluated.
    pub tickets: usize,
    /// The urgent threshold used.
    pub urgent_threshold: f32,
    /// Share of tickets whose decided class is their label.
    pub agreement: f64,
    /// Share whose likeliest class (the class head's) is their label: no
    /// threshold.
    pub argmax_agreement: f64,
    /// The class head's mean log loss (natural log): how well its
    /// probabilities are calibrated.
    pub log_loss: f64,
    /// Recall of urgent tickets (critical or high decided for critical or
    /// high) at the threshold.
    pub urgent_recall: f64,
    /// Precision of urgent decisions at the threshold.
    pub urgent_precision: f64,
    /// Precision with the threshold set for 80 % urgent recall on these
    /// tickets (a ranking figure, comparable across models).
    pub urgent_precision_at_80_recall: f64,
    /// Agreement with the threshold set for 80 % urgent recall on these
    /// tickets (what the TF-IDF reference reports beside it).
    pub agreement_at_80_recall: f64,
    /// Per class.
    pub classes: Vec<ClassReport>,
    /// Rows: label; columns: decided class.
    pub confusion: [[usize; CLASSES]; CLASSES],
}

/// Evaluate a model on `examples` at `threshold`.
pub fn evaluate(model: &Model<'_>, examples: &[&Example], threshold: f32) -> Evaluation {
    let mut confusion = [[0usize; CLASSES]; CLASSES];
    let all: Vec<classify::Scores> = examples.iter().map(|e| model.scores(&e.features)).collect();
    for (e, s) in examples.iter().zip(&all) {
        confusion[e.label][model.decide(s, threshold)] += 1;
    }
    let labels: Vec<usize> = examples.iter().map(|e| e.label).collect();
    let class: Vec<[f32; CLASSES]> = all.iter().map(|s| s.class).collect();
    let scores: Vec<f32> = all.iter().map(classify::Scores::urgent).collect();
    let urgent: Vec<bool> = examples.iter().map(|e| e.label <= 1).collect();
    let n = examples.len().max(1) as f64;
    let at_80 = threshold_for(&scores, &urgent, 0.8);
    let agree_at_80 = examples
        .iter()
        .zip(&all)
        .filter(|(e, s)| model.decide(s, at_80) == e.label)
        .count();
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let classes = (0..CLASSES)
        .map(|c| {
            let support: usize = confusion[c].iter().sum();
            let decided: usize = (0..CLASSES).map(|l| confusion[l][c]).sum();
            ClassReport {
                class: LABELS[c],
                support,
                precision: ratio(confusion[c][c], decided),
                recall: ratio(confusion[c][c], support),
            }
        })
        .collect();
    let urgent_hits: usize = (0..2)
        .flat_map(|l| (0..2).map(move |d| (l, d)))
        .map(|(l, d)| confusion[l][d])
        .sum();
    let urgent_labelled: usize = (0..2).map(|l| confusion[l].iter().sum::<usize>()).sum();
    let urgent_decided: usize = (0..CLASSES)
        .map(|l| confusion[l][0] + confusion[l][1])
        .sum();
    Evaluation {
        tickets: examples.len(),
        urgent_threshold: threshold,
        agreement: (0..CLASSES).map(|c| confusion[c][c]).sum::<usize>() as f64 / n,
        argmax_agreement: accuracy(&class, &labels),
        log_loss: log_loss(&class, &labels),
        urgent_recall: ratio(urgent_hits, urgent_labelled),
        urgent_precision: ratio(urgent_hits, urgent_decided),
        urgent_precision_at_80_recall: precision_at_recall(&scores, &urgent, 0.8),
        agreement_at_80_recall: agree_at_80 as f64 / n,
        classes,
        confusion,
    }
}

/// What `learn` made.
#[derive(Debug, Clone)]
pub struct Learned {
    /// The model image (goes into the component).
    pub image: Vec<u8>,
    /// The threshold chosen by cross-validation on the fitting part.
    pub urgent_threshold: f32,
    /// The urgency head's C chosen there.
    pub c: f64,
    /// Each C tried for it and its out-of-fold precision at the asked
    /// recall.
    pub tried: Vec<(f64, f64)>,
    /// The class head's C chosen there.
    pub class_c: f64,
    /// Each C tried for it: its out-of-fold agreement and log loss.
    pub class_tried: Vec<(f64, f64, f64)>,
    /// The class head's temperature fitted there (see
    /// [`Head::temperature`]).
    pub temperature: f32,
    /// Tickets fitted on, and reported on.
    pub fitted_on: usize,
    /// On the later part.
    pub held_out: Evaluation,
    /// The first ticket time of the later part.
    pub split_at: Option<DateTime<Utc>>,
}

/// Split examples (oldest first) by time: before `split` for fitting, the
/// rest for reporting; without `split`, the last `holdout` share.
pub fn split(
    examples: &[Example],
    at: Option<DateTime<Utc>>,
    holdout: f64,
) -> (Vec<&Example>, Vec<&Example>) {
    let cut = match at {
        Some(t) => examples.partition_point(|e| e.at < t),
        None => {
            examples.len()
                - ((examples.len() as f64 * holdout).round() as usize).min(examples.len())
        }
    };
    (
        examples[..cut].iter().collect(),
        examples[cut..].iter().collect(),
    )
}

/// Out-of-fold scores of `fit_part` for each of a head's `grid` of C:
/// each consecutive time block scored by a model fitted on the other
/// blocks, in both heads of its image, untempered (quantised as the
/// trigger reads it). The fits run on all cores; each is deterministic, so
/// the result does not depend on their order.
fn out_of_fold(
    fit_part: &[&Example],
    grid: &[f64],
    weighting: Weighting,
    s: &Settings,
) -> Result<Vec<Vec<classify::Scores>>> {
    let folds = s.folds.max(2);
    let block = |k: usize| fit_part.len() * k / folds..fit_part.len() * (k + 1) / folds;
    let jobs: Vec<(usize, f64, usize)> = grid
        .iter()
        .enumerate()
        .flat_map(|(i, &c)| (0..folds).map(move |k| (i, c, k)))
        .collect();
    let scored = crate::cores::map(&jobs, |&(_, c, k)| -> Result<Vec<classify::Scores>> {
        let held = block(k);
        let train: Vec<&Example> = fit_part[..held.start]
            .iter()
            .chain(&fit_part[held.end..])
            .copied()
            .collect();
        let fitted = fit(&train, c, s.iterations, weighting);
        let img = image(&fitted, &fitted, 0.5, 1.0, train.len())?;
        let model = Model::read(&img)
            .map_err(anyhow::Error::msg)?
            .context("a model was written")?;
        Ok(fit_part[held]
            .iter()
            .map(|e| model.scores(&e.features))
            .collect())
    });
    let mut out = vec![Vec::with_capacity(fit_part.len()); grid.len()];
    for ((i, _, _), blocks) in jobs.iter().zip(scored) {
        out[*i].extend(blocks?);
    }
    Ok(out)
}

/// Choose on `fit_part` alone, by cross-validation over consecutive time
/// blocks: the urgency head's C (the highest out-of-fold precision at the
/// asked recall) and the threshold that reaches that recall; the class
/// head's C (the highest out-of-fold agreement, then the lowest log loss)
/// and the temperature that calibrates it. Fit both heads on all of
/// `fit_part`, report on `report_part`.
pub fn learn(fit_part: &[&Example], report_part: &[&Example], s: &Settings) -> Result<Learned> {
    let urgent_count = fit_part.iter().filter(|e| e.label <= 1).count();
    if urgent_count < s.folds.max(2) {
        bail!(
            "the fitting part holds {urgent_count} urgent (critical or high) tickets: too few to learn from"
        );
    }
    for grid in [&s.c, &s.class_c] {
        if grid.is_empty() || grid.iter().any(|c| !c.is_finite() || *c <= 0.0) {
            bail!("C must be one or more positive numbers");
        }
    }
    let urgent: Vec<bool> = fit_part.iter().map(|e| e.label <= 1).collect();
    let labels: Vec<usize> = fit_part.iter().map(|e| e.label).collect();
    let mut best: Option<(f64, f64, f32)> = None;
    let mut tried = Vec::new();
    for (&c, oof) in
        s.c.iter()
            .zip(out_of_fold(fit_part, &s.c, Weighting::Balanced, s)?)
    {
        let scores: Vec<f32> = oof.iter().map(classify::Scores::urgent).collect();
        let precision = precision_at_recall(&scores, &urgent, s.urgent_recall);
        // Down to halfway to the next ticket that is not urgent: the same
        // tickets wrongly flagged, and any urgent one in between caught.
        let at = threshold_for(&scores, &urgent, s.urgent_recall);
        let below = scores
            .iter()
            .zip(&urgent)
            .filter(|(v, u)| !**u && **v < at)
            .map(|(v, _)| *v)
            .fold(0f32, f32::max);
        let threshold = (at + below) / 2.0;
        tried.push((c, precision));
        if best.is_none_or(|(_, p, _)| precision > p) {
            best = Some((c, precision, threshold));
        }
    }
    let (c, _, threshold) = best.context("at least one C")?;
    let mut class_best: Option<(f64, f64, f64, f32)> = None;
    let mut class_tried = Vec::new();
    let class_oof = out_of_fold(fit_part, &s.class_c, Weighting::Plain, s)?;
    for (&class_c, oof) in s.class_c.iter().zip(class_oof) {
        let oof: Vec<[f32; CLASSES]> = oof.iter().map(|s| s.class).collect();
        let (agreement, loss) = (accuracy(&oof, &labels), log_loss(&oof, &labels));
        class_tried.push((class_c, agreement, loss));
        if class_best.is_none_or(|(_, a, l, _)| agreement > a || (agreement == a && loss < l)) {
            class_best = Some((class_c, agreement, loss, temperature(&oof, &labels)));
        }
    }
    let (class_c, _, _, temperature) = class_best.context("at least one C")?;
    let mut heads = crate::cores::map(
        &[(c, Weighting::Balanced), (class_c, Weighting::Plain)],
        |&(c, w)| fit(fit_part, c, s.iterations, w),
    );
    let (class, urgency) = (heads.pop(), heads.pop());
    let (urgency, class) = urgency.zip(class).context("both heads fitted")?;
    let img = image(&urgency, &class, threshold, temperature, fit_part.len())?;
    let model = Model::read(&img)
        .map_err(anyhow::Error::msg)?
        .context("a model was written")?;
    let held_out = evaluate(&model, report_part, threshold);
    Ok(Learned {
        urgent_threshold: threshold,
        c,
        tried,
        class_c,
        class_tried,
        temperature,
        fitted_on: fit_part.len(),
        held_out,
        split_at: report_part.first().map(|e| e.at),
        image: img,
    })
}

/// The `learned` component with `image` written into it.
pub fn component(image: &[u8]) -> Result<Vec<u8>> {
    let base = crate::registry::COMPONENTS
        .iter()
        .find(|(name, _)| *name == "learned")
        .map(|(_, wasm)| wasm.to_vec())
        .context("this build has no learned component")?;
    let mut cap = classify::MAGIC.to_vec();
    cap.extend_from_slice(&(classify::MODEL_CAPACITY as u32).to_le_bytes());
    let at: Vec<usize> = base
        .windows(cap.len())
        .enumerate()
        .filter(|(_, w)| *w == cap.as_slice())
        .map(|(i, _)| i)
        .collect();
    let [at] = at[..] else {
        bail!(
            "the learned component holds {} model images, not one",
            at.len()
        );
    };
    if base.len() < at + classify::MODEL_CAPACITY || image.len() != classify::MODEL_CAPACITY {
        bail!("the model image does not fit the learned component");
    }
    let mut out = base;
    out[at..at + classify::MODEL_CAPACITY].copy_from_slice(image);
    Ok(out)
}

/// Write the plugin directory: `plugin.toml`, `learned.wasm`, fixtures
/// (held-out tickets with the decision the model made natively, so `plugin
/// test` shows the component decides the same) and `report.json`.
pub fn write_plugin(
    dir: &Path,
    version: &str,
    learned: &Learned,
    report_cases: &[&Case],
    report: &serde_json::Value,
) -> Result<()> {
    // Only into a new or empty directory, or over what learn wrote before
    // (whose fixtures would otherwise outlive their model).
    if dir.exists() {
        let written_by_learn = std::fs::read_to_string(dir.join("plugin.toml"))
            .is_ok_and(|t| t.starts_with("# Written by `escalator learn`"));
        let empty = std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .next()
            .is_none();
        if !written_by_learn && !empty {
            bail!(
                "{}: not empty and not written by escalator learn; choose another --out",
                dir.display()
            );
        }
        if dir.join("fixtures").exists() {
            std::fs::remove_dir_all(dir.join("fixtures"))
                .with_context(|| format!("clearing {}/fixtures", dir.display()))?;
        }
    }
    std::fs::create_dir_all(dir.join("fixtures"))
        .with_context(|| format!("creating {}", dir.display()))?;
    let wasm = component(&learned.image)?;
    std::fs::write(dir.join("learned.wasm"), &wasm)?;
    let digest = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(&learned.image))
    };
    let e = &learned.held_out;
    let manifest = format!(
        "# Written by `escalator learn`: a text classifier fitted on {fitted} labelled\n\
         # tickets; on the {tickets} later tickets it never saw, urgent (critical +\n\
         # high) recall {rec:.2} at precision {prec:.2}, agreement {agr:.2}\n\
         # (likeliest class {likeliest:.2}).\n\
         # The weights are inside learned.wasm (model {short}; report.json has\n\
         # the details).\n\
         name = \"learned\"\n\
         kind = \"trigger\"\n\
         version = \"{version}\"\n\
         description = \"A model learned from {fitted} past tickets: critical, high or medium from their words, with the words that weighed most as evidence.\"\n\
         component = \"learned.wasm\"\n\
         mode = \"active\"\n\n\
         [limits]\n\
         fuel = 200_000_000\n\
         memory-mib = 32\n\
         timeout-ms = 250\n\n\
         [on-error]\n\
         action = \"ignore\"\n\n\
         [config]\n\
         # The model's own urgent threshold is {thr:.4} (chosen for {want:.0} % recall\n\
         # on the fitting part); set urgent-threshold to override it.\n\
         max-evidence = 5\n",
        fitted = learned.fitted_on,
        tickets = e.tickets,
        rec = e.urgent_recall,
        prec = e.urgent_precision,
        agr = e.agreement,
        likeliest = e.argmax_agreement,
        short = &digest[..12],
        version = version,
        thr = learned.urgent_threshold,
        want = report["settings"]["urgent_recall"].as_f64().unwrap_or(0.0) * 100.0,
    );
    std::fs::write(dir.join("plugin.toml"), manifest)?;
    // One held-out ticket per decided class, where there is one.
    let model = Model::read(&learned.image)
        .map_err(anyhow::Error::msg)?
        .context("a model was written")?;
    let mut done = [false; CLASSES];
    for c in report_cases {
        let f = features(&c.ticket, false);
        let class = model.decide(&model.scores(&f), learned.urgent_threshold);
        if done[class]
            || c.ticket.subject.len()
                + c.ticket
                    .messages
                    .iter()
                    .map(|m| m.body.len())
                    .sum::<usize>()
                > 8_000
        {
            continue;
        }
        done[class] = true;
        let signals = match class {
            3 => serde_json::json!([]),
            c => {
                serde_json::json!([{"key": format!("learned:{}", LABELS[c]), "tier": LABELS[c], "action": "escalate"}])
            }
        };
        let fixture = serde_json::json!({
            "name": format!("held-out {} is decided {} as natively", c.ticket.id, LABELS[class]),
            "ticket": c.ticket,
            "event": "ticket-created",
            "expect": {"signals": signals},
        });
        std::fs::write(
            dir.join("fixtures")
                .join(format!("{}-{}.json", class, LABELS[class])),
            serde_json::to_string_pretty(&fixture)?,
        )?;
    }
    std::fs::write(
        dir.join("report.json"),
        serde_json::to_string_pretty(report)?,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(id: usize, text: &str, label: usize) -> Example {
        Example {
            case: id,
            id: format!("T-{id:03}"),
            at: DateTime::from_timestamp(1_600_000_000 + id as i64 * 3600, 0).unwrap(),
            features: classify::features(&[classify::Input::Text(text)], false),
            label,
        }
    }

    fn data() -> Vec<Example> {
        (0..200)
            .map(|i| match i % 10 {
                0 => example(i, &format!("data loss on node {i} cluster down"), 0),
                1 => example(i, &format!("the namenode hangs after failover {i}"), 1),
                2..=7 => example(i, &format!("build warning in module {i} test flaky"), 2),
                _ => example(i, &format!("typo in docs page {i} javadoc"), 3),
            })
            .collect()
    }

    #[test]
    fn the_same_data_give_the_same_model_and_other_data_another() {
        let d = data();
        let all: Vec<&Example> = d.iter().collect();
        let made = |train: &[&Example]| {
            let u = fit(train, 1.0, 100, Weighting::Balanced);
            let c = fit(train, 3.0, 100, Weighting::Plain);
            image(&u, &c, 0.5, 1.2, all.len()).unwrap()
        };
        let a = made(&all);
        assert!(a == made(&all), "byte for byte");
        assert!(a != made(&all[1..]));
        let other = fit(&all[1..], 3.0, 100, Weighting::Plain);
        assert!(
            image(
                &fit(&all, 1.0, 100, Weighting::Balanced),
                &other,
                0.5,
                1.0,
                1
            )
            .is_err(),
            "heads fitted on different tickets"
        );
    }

    #[test]
    fn fitting_lowers_the_loss_until_the_words_decide() {
        let d = data();
        let all: Vec<&Example> = d.iter().collect();
        for weighting in [Weighting::Balanced, Weighting::Plain] {
            let f = fit(&all, 10.0, 300, weighting);
            let img = image(&f, &f, 0.5, 1.0, all.len()).unwrap();
            let m = Model::read(&img).unwrap().unwrap();
            for e in &d {
                let s = m.scores(&e.features);
                for p in [s.urgency, s.class] {
                    assert!(p[e.label] > 0.6, "{} {p:?} for {}", e.id, e.label);
                }
            }
        }
    }

    #[test]
    fn the_threshold_is_chosen_on_the_earlier_part_and_the_later_part_is_only_reported() {
        let d = data();
        let cut = d[150].at;
        let (fit_part, report_part) = split(&d, Some(cut), 0.0);
        assert_eq!((fit_part.len(), report_part.len()), (150, 50));
        assert!(fit_part.iter().all(|e| e.at < cut) && report_part.iter().all(|e| e.at >= cut));
        let one_c = Settings {
            c: vec![1.0],
            ..Settings::default()
        };
        let learned = learn(&fit_part, &report_part, &one_c).unwrap();
        assert_eq!(learned.fitted_on, 150);
        assert_eq!(learned.held_out.tickets, 50);
        assert_eq!(learned.split_at, Some(cut));
        // Separable data: every later ticket decided as labelled.
        assert_eq!(learned.held_out.agreement, 1.0, "{:?}", learned.held_out);
        assert_eq!(learned.held_out.urgent_recall, 1.0);
        // Changing a later ticket's label changes the report, not the model.
        let mut d2 = d.clone();
        d2[180].label = 3;
        let (f2, r2) = split(&d2, Some(cut), 0.0);
        let again = learn(&f2, &r2, &one_c).unwrap();
        assert!(
            again.image == learned.image,
            "the later part is never fitted on"
        );
        assert!(again.held_out.agreement < 1.0);
        let (f3, r3) = split(&d, None, 0.25);
        assert_eq!((f3.len(), r3.len()), (150, 50));
    }

    /// Probabilities twice as sure as their labels bear out are tempered
    /// by 2, and ones as sure as the labels by 1.
    #[test]
    fn the_temperature_is_the_one_the_labels_bear_out() {
        let logits = [
            [2.0f32, 0.5, -1.0, 0.0],
            [-1.0, 1.5, 0.5, 0.0],
            [0.0, -0.5, 1.0, 2.0],
        ];
        for truth in [2.0f32, 1.0, 0.5] {
            let (mut p, mut labels) = (Vec::new(), Vec::new());
            for z in logits {
                // 1,000 tickets with these logits, labelled in the shares
                // softmax(z / truth) gives.
                let shares = classify::softmax(z.map(|v| v / truth));
                for (class, share) in shares.iter().enumerate() {
                    for _ in 0..(share * 1000.0).round() as usize {
                        p.push(classify::softmax(z));
                        labels.push(class);
                    }
                }
            }
            let t = temperature(&p, &labels);
            assert!((t - truth).abs() < 0.02 * truth, "{t} for {truth}");
            let tempered: Vec<[f32; CLASSES]> = p
                .iter()
                .map(|q| classify::softmax(q.map(|v| v.ln() / t)))
                .collect();
            assert!(log_loss(&tempered, &labels) <= log_loss(&p, &labels) + 1e-9);
        }
    }

    #[test]
    fn precision_at_a_recall_sets_the_threshold_on_the_urgent_scores() {
        let scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.1];
        let urgent = [true, false, true, false, true, false];
        assert_eq!(threshold_for(&scores, &urgent, 0.6), 0.7);
        assert!((precision_at_recall(&scores, &urgent, 0.6) - 2.0 / 3.0).abs() < 1e-9);
        assert!((precision_at_recall(&scores, &urgent, 1.0) - 3.0 / 5.0).abs() < 1e-9);
    }
}
