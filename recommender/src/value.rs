//! Value of information: how many bits an experiment's outcome would teach.
//!
//! ## The estimator (BALD-style, from posterior draws)
//! The model's uncertain parameters θ are represented by S posterior draws θ₁..θ_S (the same draws
//! the simulator runs). Under draw s, the experiment's outcome at an endpoint (failed requests
//! among the `n` it serves during the experiment) is Binomial(n, p_s), with p_s the error rate the
//! simulator predicts under that draw. The mutual information between the outcome Y and θ is
//!
//! ```text
//! I(Y; θ) = H(Y) − E_s[H(Y | θ_s)]
//!         = H( (1/S) Σ_s Binomial(n, p_s) ) − (1/S) Σ_s H( Binomial(n, p_s) )
//! ```
//!
//! in bits: the entropy of the predictive distribution minus the expected entropy under each draw.
//! It is 0 when every draw predicts the same outcome (nothing to learn), at most log2(S) (the
//! outcome identifies the draw), and grows with `n` while draws remain distinguishable. Both
//! entropies are computed exactly over y (where the binomial mass is not negligible) for
//! n ≤ [`EXACT_N`]; above, the figure for `EXACT_N` is used (a lower bound).
//!
//! An experiment's value about the model is what its outcome teaches *beyond what the same
//! requests would teach without the fault* (normal traffic also reveals natural error rates):
//! I(faulted outcome; θ) − I(unfaulted outcome; θ), floored at 0, per endpoint.
//!
//! An intent's verdict is a yes/no fact; an experiment that settles it teaches H(P(holds)) bits
//! (the binary entropy: 1 bit at P = 0.5, none when the model is already sure).

use augur_model::beta::ln_gamma;

/// Outcomes are enumerated exactly up to this many requests.
/// (Larger experiments are valued as this many: a lower bound.)
pub const EXACT_N: u64 = 2_000;

/// Binary entropy in bits.
pub fn binary_entropy(p: f64) -> f64 {
    if !(p > 0.0 && p < 1.0) {
        return 0.0;
    }
    -(p * p.log2() + (1.0 - p) * (1.0 - p).log2())
}

/// The Binomial(n, p) probability mass where it is not negligible: (first y, masses).
fn binomial_pmf(n: u64, p: f64) -> (u64, Vec<f64>) {
    if p <= 0.0 {
        return (0, vec![1.0]);
    }
    if p >= 1.0 {
        return (n, vec![1.0]);
    }
    let (nf, mean) = (n as f64, n as f64 * p);
    let sd = (nf * p * (1.0 - p)).sqrt();
    // Beyond 10 standard deviations (and at least 30 outcomes either side) the mass is below
    // 1e-20 of the total.
    let reach = (10.0 * sd).max(30.0);
    let lo = (mean - reach).floor().max(0.0) as u64;
    let hi = ((mean + reach).ceil() as u64).min(n);
    let (lp, lq) = (p.ln(), (1.0 - p).ln());
    let ln_choose =
        |y: u64| ln_gamma(nf + 1.0) - ln_gamma(y as f64 + 1.0) - ln_gamma((n - y) as f64 + 1.0);
    let mut out = Vec::with_capacity((hi - lo + 1) as usize);
    let mut ln_c = ln_choose(lo);
    for y in lo..=hi {
        if y > lo {
            ln_c += ((n - y + 1) as f64).ln() - (y as f64).ln();
        }
        out.push((ln_c + y as f64 * lp + (n - y) as f64 * lq).exp());
    }
    (lo, out)
}

fn entropy_bits(pmf: &[f64]) -> f64 {
    pmf.iter()
        .filter(|&&q| q > 0.0)
        .map(|&q| -q * q.log2())
        .sum()
}

/// I(Y; θ) in bits for an outcome Y ~ Binomial(n, p_s) under each of the draws `ps` (equally
/// weighted). Draws that are not finite are ignored. Above [`EXACT_N`] requests the figure for
/// `EXACT_N` is returned: a lower bound (more requests only tell draws apart better), which keeps
/// the cost bounded whatever the traffic.
pub fn mutual_information(ps: &[f64], n: u64) -> f64 {
    let ps: Vec<f64> = ps
        .iter()
        .copied()
        .filter(|p| p.is_finite())
        .map(|p| p.clamp(0.0, 1.0))
        .collect();
    if ps.is_empty() || n == 0 {
        return 0.0;
    }
    let n = n.min(EXACT_N);
    let s = ps.len() as f64;
    let mut mix = vec![0.0; n as usize + 1];
    let mut conditional = 0.0;
    for &p in &ps {
        let (lo, pmf) = binomial_pmf(n, p);
        conditional += entropy_bits(&pmf) / s;
        for (k, q) in pmf.iter().enumerate() {
            if let Some(m) = mix.get_mut(lo as usize + k) {
                *m += q / s;
            }
        }
    }
    (entropy_bits(&mix) - conditional).max(0.0)
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

    #[test]
    fn pmf_sums_to_one() {
        for (n, p) in [(10, 0.3), (1000, 0.01), (1, 0.5), (50, 0.999)] {
            let s: f64 = binomial_pmf(n, p).1.iter().sum();
            assert!((s - 1.0).abs() < 1e-9, "{n} {p}");
        }
    }

    #[test]
    fn known_answers() {
        // Every draw agrees: nothing to learn.
        assert!(mutual_information(&[0.3; 64], 500) < 1e-9);
        // Two equally likely worlds, told apart for sure: one bit.
        let half: Vec<f64> = (0..64)
            .map(|i| if i % 2 == 0 { 0.0 } else { 1.0 })
            .collect();
        assert!((mutual_information(&half, 100) - 1.0).abs() < 1e-9);
        // Four distinct, well-separated rates: two bits.
        let four: Vec<f64> = (0..64).map(|i| [0.0, 0.33, 0.66, 1.0][i % 4]).collect();
        assert!((mutual_information(&four, 1000) - 2.0).abs() < 1e-3);
        // One request cannot tell 0.4 from 0.6 well: I(Y;θ) = H(0.5) - H(0.4) bits.
        let close: Vec<f64> = (0..64)
            .map(|i| if i % 2 == 0 { 0.4 } else { 0.6 })
            .collect();
        let want = 1.0 - binary_entropy(0.4);
        assert!((mutual_information(&close, 1) - want).abs() < 1e-9);
        // More requests teach more, never more than log2(S).
        let spread: Vec<f64> = (0..64).map(|i| i as f64 / 63.0).collect();
        let (a, b) = (
            mutual_information(&spread, 10),
            mutual_information(&spread, 1000),
        );
        assert!(a < b && b <= 6.0 + 1e-9, "{a} {b}");
        // Large n is valued as EXACT_N requests: still the two bits.
        let big = mutual_information(&four, 100_000);
        assert!((big - 2.0).abs() < 1e-3, "{big}");
    }
}
