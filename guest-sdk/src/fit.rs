//! Fitting the classifier of [`crate::classify`], natively (what
//! `escalator learn` runs; not part of a plugin).
//!
//! Multinomial logistic regression on the hashed, IDF-weighted features,
//! each class weighted by its inverse frequency (urgent tickets are rare:
//! the urgency head) or every ticket the same (the class head), with an L2
//! penalty as scikit-learn's `C` sets it, minimised by L-BFGS
//! from zero. Single-threaded and without randomness: the same examples and
//! settings give the same weights, bit for bit.

use crate::classify::{BUCKETS, CLASSES, Features, idf_byte, idf_of};

/// A fitted model's numbers (before they are quantised into an image).
#[derive(Debug, Clone, PartialEq)]
pub struct Fitted {
    /// Each bucket's IDF byte (0: no fitted ticket touched it).
    pub idf: Vec<u8>,
    /// `weights[bucket * CLASSES + class]`.
    pub weights: Vec<f32>,
    /// Each class's bias.
    pub bias: [f32; CLASSES],
}

/// How the fitting tickets weigh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weighting {
    /// Each class the same in total (inverse frequency), as scikit-learn's
    /// `class_weight="balanced"`.
    Balanced,
    /// Each ticket the same: probabilities for the real mix of classes.
    Plain,
}

/// Each bucket's IDF over `train` (`ln((1 + n) / (1 + df)) + 1`, as
/// scikit-learn smooths it), quantised as the image stores it.
fn idf(train: &[(&Features, usize)]) -> Vec<u8> {
    let mut df = vec![0u32; BUCKETS];
    for (f, _) in train {
        for &b in &f.buckets {
            df[b as usize] += 1;
        }
    }
    let n = train.len() as f64;
    df.iter()
        .map(|&d| {
            if d == 0 {
                0
            } else {
                idf_byte((((1.0 + n) / (1.0 + f64::from(d))).ln() + 1.0) as f32)
            }
        })
        .collect()
}

/// One example as (bucket, value) pairs: IDF-weighted, unit length.
fn rows(train: &[(&Features, usize)], idf: &[u8]) -> Vec<Vec<(u32, f64)>> {
    train
        .iter()
        .map(|(f, _)| {
            let mut row: Vec<(u32, f64)> = f
                .buckets
                .iter()
                .filter(|b| idf[**b as usize] > 0)
                .map(|&b| (b, f64::from(idf_of(idf[b as usize]))))
                .collect();
            let norm = row.iter().map(|(_, v)| v * v).sum::<f64>().sqrt();
            for (_, v) in &mut row {
                *v /= norm;
            }
            row
        })
        .collect()
}

/// Fit on `train`: softmax regression weighted as `weighting` says, with
/// an L2 penalty, by L-BFGS from zero. No randomness: the same data and
/// settings give the same weights.
pub fn fit_examples(
    train: &[(&Features, usize)],
    c: f64,
    iterations: usize,
    weighting: Weighting,
) -> Fitted {
    let idf = idf(train);
    let mut rows = rows(train, &idf);
    // Only the buckets some ticket touches have a weight to fit: number
    // them compactly (the rest stay zero).
    let mut index = vec![u32::MAX; BUCKETS];
    let mut used: Vec<u32> = Vec::new();
    for row in &mut rows {
        for (b, _) in row.iter_mut() {
            if index[*b as usize] == u32::MAX {
                index[*b as usize] = used.len() as u32;
                used.push(*b);
            }
            *b = index[*b as usize];
        }
    }
    let features = used.len();
    let mut counts = [0usize; CLASSES];
    for (_, label) in train {
        counts[*label] += 1;
    }
    let n = train.len().max(1) as f64;
    let class_weight: Vec<f64> = counts
        .iter()
        .map(|&k| {
            if k == 0 {
                0.0
            } else if weighting == Weighting::Plain {
                1.0
            } else {
                n / (CLASSES as f64 * k as f64)
            }
        })
        .collect();
    let labels: Vec<usize> = train.iter().map(|(_, l)| *l).collect();
    // Parameters: the weights, then the biases (not penalised). The
    // objective is divided by C·n so its scale does not depend on either.
    let dim = features * CLASSES + CLASSES;
    let penalty = 1.0 / (c * n);
    let objective = |x: &[f64], grad: &mut [f64]| -> f64 {
        grad.fill(0.0);
        let mut loss = 0.0;
        let bias = &x[features * CLASSES..];
        for (row, &label) in rows.iter().zip(&labels) {
            let mut z = [0f64; CLASSES];
            z.copy_from_slice(bias);
            for &(b, v) in row {
                let at = b as usize * CLASSES;
                for k in 0..CLASSES {
                    z[k] += x[at + k] * v;
                }
            }
            let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = z.iter().map(|v| (v - max).exp()).sum();
            let w = class_weight[label] / n;
            loss += w * (max + sum.ln() - z[label]);
            let mut g = [0f64; CLASSES];
            for k in 0..CLASSES {
                let p = (z[k] - max).exp() / sum;
                g[k] = w * (p - if k == label { 1.0 } else { 0.0 });
                grad[features * CLASSES + k] += g[k];
            }
            for &(b, v) in row {
                let at = b as usize * CLASSES;
                for k in 0..CLASSES {
                    grad[at + k] += g[k] * v;
                }
            }
        }
        let mut sq = 0.0;
        for i in 0..features * CLASSES {
            sq += x[i] * x[i];
            grad[i] += penalty * x[i];
        }
        loss + 0.5 * penalty * sq
    };
    let x = lbfgs(dim, iterations, objective);
    let mut weights = vec![0f32; BUCKETS * CLASSES];
    for (i, &b) in used.iter().enumerate() {
        for k in 0..CLASSES {
            weights[b as usize * CLASSES + k] = x[i * CLASSES + k] as f32;
        }
    }
    let mut bias = [0f32; CLASSES];
    for k in 0..CLASSES {
        bias[k] = x[features * CLASSES + k] as f32;
    }
    Fitted { idf, weights, bias }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Minimise a smooth convex function from zero by L-BFGS (7 pairs of
/// history, backtracking line search); stops when the gradient is flat or
/// the objective no longer falls.
fn lbfgs(dim: usize, iterations: usize, f: impl Fn(&[f64], &mut [f64]) -> f64) -> Vec<f64> {
    const MEMORY: usize = 7;
    let mut x = vec![0f64; dim];
    let mut g = vec![0f64; dim];
    let mut fx = f(&x, &mut g);
    let mut history: std::collections::VecDeque<(Vec<f64>, Vec<f64>, f64)> = Default::default();
    let mut d = vec![0f64; dim];
    let mut x_new = vec![0f64; dim];
    let mut g_new = vec![0f64; dim];
    for it in 0..iterations {
        if g.iter().fold(0f64, |m, v| m.max(v.abs())) < 1e-7 {
            break;
        }
        // Two-loop recursion: d = -H g.
        d.iter_mut().zip(&g).for_each(|(d, g)| *d = -g);
        let mut alphas = Vec::with_capacity(history.len());
        for (s, y, rho) in history.iter().rev() {
            let a = rho * dot(s, &d);
            d.iter_mut().zip(y).for_each(|(d, y)| *d -= a * y);
            alphas.push(a);
        }
        if let Some((s, y, _)) = history.back() {
            let gamma = dot(s, y) / dot(y, y);
            d.iter_mut().for_each(|d| *d *= gamma);
        }
        for ((s, y, rho), a) in history.iter().zip(alphas.iter().rev()) {
            let b = rho * dot(y, &d);
            d.iter_mut().zip(s).for_each(|(d, s)| *d += (a - b) * s);
        }
        let slope = dot(&g, &d);
        if slope >= 0.0 {
            // Not a descent direction: start the history again.
            history.clear();
            continue;
        }
        let mut t = if it == 0 && history.is_empty() {
            1.0 / g.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12)
        } else {
            1.0
        };
        let mut accepted = false;
        for _ in 0..40 {
            x_new
                .iter_mut()
                .zip(&x)
                .zip(&d)
                .for_each(|((n, x), d)| *n = x + t * d);
            let f_new = f(&x_new, &mut g_new);
            if f_new <= fx + 1e-4 * t * slope {
                let s: Vec<f64> = x_new.iter().zip(&x).map(|(a, b)| a - b).collect();
                let y: Vec<f64> = g_new.iter().zip(&g).map(|(a, b)| a - b).collect();
                let sy = dot(&s, &y);
                if sy > 1e-12 {
                    if history.len() == MEMORY {
                        history.pop_front();
                    }
                    history.push_back((s, y, 1.0 / sy));
                }
                let falling = fx - f_new;
                std::mem::swap(&mut x, &mut x_new);
                std::mem::swap(&mut g, &mut g_new);
                fx = f_new;
                accepted = falling > 1e-10 * fx.abs().max(1e-12);
                break;
            }
            t *= 0.5;
        }
        if !accepted {
            break;
        }
    }
    x
}
