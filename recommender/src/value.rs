//! Value of information: how many bits an experiment's outcome would teach.
//!
//! ## The estimator: information about what every candidate would show
//! The model's uncertain parameters θ are represented by S posterior draws θ₁..θ_S, the same
//! draws for every candidate experiment (the simulator runs one shared set). Under draw s, each
//! candidate c predicts three quantities y_c(s): the share of user requests that would fail
//! while it runs, and the log of their median and of their 99th-percentile latency (each a mean
//! over endpoints weighted by their traffic). An experiment e's outcome is the same three
//! quantities over the requests it touches, y_e(s), observed with sampling noise (binomial for
//! the failures; about π/2 · σ²/n for a log median and 13.9 · σ²/n for a log p99 of n requests
//! whose log latency has spread σ).
//!
//! What matters is not the parameters for their own sake but the predictions they make: the
//! value of e is the information its outcome gives about the outcome of *every* candidate (the
//! expected predictive information gain, "EPIG", of Bickford Smith et al., 2023, "Prediction-
//! oriented Bayesian active learning"), in its Gaussian form:
//!
//! ```text
//! value(e) = Σ_c Σ_q [ I(y_e; y_c,q) − I(y_e⁰; y_c,q) ]⁺,   I(x; t) = −½ log2(1 − R²(x, t))
//! ```
//!
//! - q runs over the three quantities; y_e is the whole outcome (all three together).
//! - R²(x, t) is the share of t's variance across draws that the best linear fit on x explains,
//!   discounted by every side's observation noise (a rate seen over few requests says little),
//!   with the chance fit of S draws removed (the adjusted R², `1 − (1 − R²)(S − 1)/(S − k − 1)`
//!   for k outcome quantities, floored at 0).
//! - Each target is seen no more precisely than [`RESOLUTION`] (a percentage point of
//!   failures) or [`LATENCY_RESOLUTION`] (5% of latency): information finer than that changes
//!   no decision, so a rate already known to ±0.01% is not worth learning to ±0.001%, while one
//!   known only to ±30% is worth several bits.
//! - y_e⁰ is what the same requests would show *without* the fault (the baseline draws): normal
//!   traffic teaches that anyway, so only what the fault adds counts.
//! - A candidate's failures and latency are counted as separate targets: where a timeout moves
//!   both, learning it counts twice. Latency counts for systems whose traces carry no errors at
//!   all (whose every experiment would otherwise be worth nothing) and for retries and
//!   timeouts that change how long requests take more than whether they fail.
//!
//! An experiment that settles a parameter many predictions hang on (a timeout every slow call
//! meets, the timeout habits every unseen timeout is drawn from, a fallback every outage behind
//! it tests) is worth more than one that settles a parameter only it depends on. An earlier
//! version valued each experiment by BALD, the information its outcome gives about the
//! parameters (H(predictive) − E[H(per draw)]); on the shop it ranked experiments against the
//! error reduction they really bring with Spearman 0.58 (this estimator: 0.64), and its
//! experiments did not beat random choice in the learning-efficiency loop (docs/ACCURACY.md).
//!
//! An intent's verdict is a yes/no fact; an experiment that settles it teaches H(P(holds)) bits
//! (the binary entropy: 1 bit at P = 0.5, none when the model is already sure).

/// How precisely a candidate's failure rate is worth knowing: a percentage point. Information
/// beyond it changes no decision, so the targets of [`predictive_information`] are seen at this
/// resolution (their noise is at least its square): learning a rate of 0.1% ± 0.01% to
/// ± 0.001% is worth next to nothing, learning one of 40% ± 30% is worth several bits.
pub const RESOLUTION: f64 = 0.01;

/// How precisely a candidate's latency is worth knowing, as a natural-log ratio: 5%. A median
/// known to ±1% is not worth refining; one that a timeout may cut in half or not is.
pub const LATENCY_RESOLUTION: f64 = 0.05;

/// Binary entropy in bits.
pub fn binary_entropy(p: f64) -> f64 {
    if !(p > 0.0 && p < 1.0) {
        return 0.0;
    }
    -(p * p.log2() + (1.0 - p) * (1.0 - p).log2())
}

/// A quantity seen per posterior draw with observation noise: an experiment's outcome (its
/// failure rate over the requests it touches), or what a candidate experiment would show.
#[derive(Debug, Clone)]
pub struct Observable {
    /// Per draw, the value minus its mean.
    centred: Vec<f64>,
    /// The spread of the value across draws.
    var: f64,
    /// The sampling noise of observing it (the binomial variance of a rate over its requests).
    noise: f64,
}

impl Observable {
    /// From per-draw values (`None` where it did not run: the mean stands in) observed with
    /// noise variance `noise`; `None` when no draw has a value.
    pub fn new(values: &[Option<f64>], noise: f64) -> Option<Observable> {
        let known: Vec<f64> = values
            .iter()
            .flatten()
            .copied()
            .filter(|x| x.is_finite())
            .collect();
        if known.is_empty() {
            return None;
        }
        let mean = known.iter().sum::<f64>() / known.len() as f64;
        let centred: Vec<f64> = values
            .iter()
            .map(|x| x.filter(|x| x.is_finite()).map_or(0.0, |x| x - mean))
            .collect();
        let var = centred.iter().map(|x| x * x).sum::<f64>() / centred.len() as f64;
        Some(Observable {
            centred,
            var,
            noise: noise.max(0.0),
        })
    }

    /// The same, seen no more precisely than `sd` (a noise floor of `sd²`).
    pub fn at_resolution(mut self, sd: f64) -> Observable {
        self.noise = self.noise.max(sd * sd);
        self
    }

    fn cov(&self, o: &Observable) -> f64 {
        self.centred
            .iter()
            .zip(&o.centred)
            .map(|(a, b)| a * b)
            .sum::<f64>()
            / self.centred.len().max(1) as f64
    }
}

/// The share of a target's variance that a linear fit on the outcomes `xs` explains (every
/// side's observation noise included, each outcome's independent of the others'), with the
/// chance fit of few draws removed (the adjusted R², `1 − (1 − R²)(S − 1)/(S − k − 1)` for
/// k outcomes), in [0, 1).
fn explained(xs: &[Observable], t: &Observable) -> f64 {
    let s = t.centred.len() as f64;
    let dt = t.var + t.noise;
    // Outcomes that never vary and are never noisy carry nothing (and would make the
    // system singular).
    let xs: Vec<&Observable> = xs
        .iter()
        .filter(|x| x.centred.len() == t.centred.len() && x.var + x.noise > 0.0)
        .collect();
    let k = xs.len();
    if k == 0 || dt <= 0.0 || s < k as f64 + 2.0 {
        return 0.0;
    }
    // Normal equations of the best linear predictor: A w = b, A the outcomes' covariance
    // (noise on the diagonal), b their covariance with the target; R² = b·w / var(target).
    let mut a: Vec<Vec<f64>> = xs
        .iter()
        .enumerate()
        .map(|(i, x)| {
            xs.iter()
                .enumerate()
                .map(|(j, y)| x.cov(y) + if i == j { x.noise } else { 0.0 })
                .collect()
        })
        .collect();
    // A ridge far below any noise keeps outcomes that repeat each other solvable.
    let ridge = a
        .iter()
        .enumerate()
        .map(|(i, r)| r[i])
        .fold(0.0f64, f64::max)
        * 1e-9;
    for (i, r) in a.iter_mut().enumerate() {
        r[i] += ridge;
    }
    let b: Vec<f64> = xs.iter().map(|x| x.cov(t)).collect();
    let Some(w) = solve(&mut a, b.clone()) else {
        return 0.0;
    };
    let r2 = (b.iter().zip(&w).map(|(b, w)| b * w).sum::<f64>() / dt).clamp(0.0, 1.0);
    (1.0 - (1.0 - r2) * (s - 1.0) / (s - k as f64 - 1.0)).clamp(0.0, 1.0 - 1e-12)
}

/// Solves `a x = b` for a small symmetric positive semi-definite `a` (Gaussian elimination
/// with partial pivoting); `None` when `a` is singular.
fn solve(a: &mut [Vec<f64>], mut b: Vec<f64>) -> Option<Vec<f64>> {
    let n = b.len();
    let scale = (0..n).map(|i| a[i][i].abs()).fold(0.0f64, f64::max);
    for col in 0..n {
        let pivot = (col..n).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() <= scale * 1e-12 {
            return None;
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        for row in col + 1..n {
            let f = a[row][col] / a[col][col];
            let (above, below) = a.split_at_mut(row);
            for (x, p) in below[0][col..].iter_mut().zip(&above[col][col..]) {
                *x -= f * p;
            }
            b[row] -= f * b[col];
        }
    }
    let mut x = vec![0.0; n];
    for row in (0..n).rev() {
        let tail: f64 = (row + 1..n).map(|c| a[row][c] * x[c]).sum();
        x[row] = (b[row] - tail) / a[row][row];
    }
    Some(x)
}

/// Expected information, in bits, that an experiment's outcome (the quantities `faulted`: its
/// failure rate, its latencies) gives about the targets (what every candidate experiment would
/// show) beyond what the same requests would give without the fault (`normal`, the same
/// quantities): Σ over targets of [I(faulted; target) − I(normal; target)]⁺ (normal traffic
/// teaches the rest anyway).
///
/// Gaussian approximation across posterior draws: I(X; T) = −½ log2(1 − R²), R² the share of
/// the target's variance a linear fit on X explains (observation noise on every side included,
/// the chance fit of few draws removed). With S draws, unrelated quantities
/// correlate by chance; that is not information, and the adjustment takes it out on average.
pub fn predictive_information(
    faulted: &[Observable],
    normal: &[Observable],
    targets: &[Observable],
) -> f64 {
    let draws = faulted.first().map_or(0, |f| f.centred.len());
    targets
        .iter()
        .filter(|t| t.centred.len() == draws && t.var > 0.0)
        .map(|t| {
            let with_fault = explained(faulted, t);
            let without = explained(normal, t);
            (-0.5 * ((1.0 - with_fault) / (1.0 - without)).log2()).max(0.0)
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_entropy_known_values() {
        assert!((binary_entropy(0.5) - 1.0).abs() < 1e-12);
        assert_eq!(binary_entropy(0.0), 0.0);
        assert_eq!(binary_entropy(1.0), 0.0);
        assert!((binary_entropy(0.11) - 0.4999).abs() < 1e-3);
    }

    /// A seeded stream of uniform numbers for the tests.
    fn uniforms(seed: u64, n: usize) -> Vec<f64> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (x >> 11) as f64 / (1u64 << 53) as f64
            })
            .collect()
    }

    #[test]
    fn predictive_information_known_answers() {
        let n = 4000;
        let some = |v: Vec<f64>| v.into_iter().map(Some).collect::<Vec<_>>();
        let rates = some(uniforms(1, n).into_iter().map(|u| 0.2 + 0.6 * u).collect());
        let flat = Observable::new(&vec![Some(0.01); n], 0.0).unwrap();
        let var = Observable::new(&rates, 0.0).unwrap().var;
        // The outcome is the target itself, each seen with noise equal to the spread:
        // R² = ½ × ½ = ¼, so I = −½ log2(¾); the normal outcome says nothing.
        let t = Observable::new(&rates, var).unwrap();
        let y = Observable::new(&rates, var).unwrap();
        let i = predictive_information(
            std::slice::from_ref(&y),
            std::slice::from_ref(&flat),
            std::slice::from_ref(&t),
        );
        let want = -0.5 * 0.75f64.log2();
        assert!((i - want).abs() < 0.01, "{i} vs {want}");
        // Two targets, twice the information; an outcome that never varies teaches nothing.
        let two = predictive_information(
            std::slice::from_ref(&y),
            std::slice::from_ref(&flat),
            &[t.clone(), t.clone()],
        );
        assert!((two - 2.0 * i).abs() < 1e-9);
        assert_eq!(
            predictive_information(
                std::slice::from_ref(&flat),
                std::slice::from_ref(&flat),
                std::slice::from_ref(&t)
            ),
            0.0
        );
        // What the same requests would show without the fault is not counted again.
        assert!(
            predictive_information(
                std::slice::from_ref(&y),
                std::slice::from_ref(&y),
                std::slice::from_ref(&t)
            ) < 1e-6
        );
        // An unrelated outcome (independent draws): next to nothing, with few draws too.
        for n in [32, 4000] {
            let y = Observable::new(&some(uniforms(7, n)), 0.0).unwrap();
            let normal = Observable::new(&some(uniforms(8, n)), 0.0).unwrap();
            let mut total = 0.0;
            for k in 0..50 {
                let t = Observable::new(&some(uniforms(100 + k, n)), 0.0).unwrap();
                total += predictive_information(
                    std::slice::from_ref(&y),
                    std::slice::from_ref(&normal),
                    &[t],
                );
            }
            assert!(
                total / 50.0 < 0.03,
                "{n} draws: {} bits per target",
                total / 50.0
            );
        }
    }

    #[test]
    fn two_outcomes_tell_what_each_alone_cannot() {
        let n = 4000;
        let some = |v: Vec<f64>| v.into_iter().map(Some).collect::<Vec<_>>();
        let a = uniforms(11, n);
        let b = uniforms(12, n);
        let sum: Vec<f64> = a.iter().zip(&b).map(|(a, b)| a + b).collect();
        let var_sum = Observable::new(&some(sum.clone()), 0.0).unwrap().var;
        // The target is seen with noise of 1% of its spread: R² ≈ 1/1.01 from both outcomes.
        let t = Observable::new(&some(sum), var_sum * 0.01).unwrap();
        let x1 = Observable::new(&some(a.clone()), 0.0).unwrap();
        let x2 = Observable::new(&some(b), 0.0).unwrap();
        let flat = Observable::new(&vec![Some(0.5); n], 0.0).unwrap();
        let both = predictive_information(
            &[x1.clone(), x2],
            &[flat.clone(), flat.clone()],
            std::slice::from_ref(&t),
        );
        let want = -0.5 * (1.0 - 1.0 / 1.01f64).log2();
        assert!((both - want).abs() < 0.1, "{both} vs {want}");
        // One of the two explains half the target's variance (about 0.5 bits).
        let one = predictive_information(
            std::slice::from_ref(&x1),
            std::slice::from_ref(&flat),
            std::slice::from_ref(&t),
        );
        assert!((one - 0.5).abs() < 0.05, "{one}");
        // An outcome repeated adds nothing (and does not make the fit singular).
        let twice = predictive_information(
            &[x1.clone(), x1.clone()],
            &[flat.clone(), flat.clone()],
            std::slice::from_ref(&t),
        );
        assert!((twice - one).abs() < 1e-3, "{twice} vs {one}");
    }
}
