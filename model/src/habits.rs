//! The system's timeout habits, learned across call sites: what a call site whose timeout was
//! never seen probably has.
//!
//! Timeouts are rarely independent choices: a team's client libraries and conventions set most of
//! them alike. Each synchronous call site either has a timeout, with probability π, at a
//! threshold T with ln T ~ Normal(μ, σ²), or has none. The traces show two kinds of site:
//! - **seen**: calls were cut (or piled up) at a threshold: T is known;
//! - **censored**: no call was ever cut, and the longest attempt lasted d: either there is no
//!   timeout, or T > d. An experiment that slowed calls and saw them survive is strong evidence
//!   here; normal traffic's short calls are weak evidence.
//!
//! π, μ and σ are fitted to both (the EM algorithm for a cure-mixture with right censoring, to
//! the posterior mode), with a Beta(2, 2) prior on π so that a handful of sites never claims a
//! share of 0 or 1, and a prior on σ² worth [`PRIOR_SITES`] sites at σ = 1 (a factor e either
//! way) so that a few thresholds that happen to agree do not look like tight habits. The fit needs at least one seen timeout; without one, nothing is known about
//! the habits. The simulator draws π and μ per posterior draw from [`TimeoutHabits::share`] and
//! the mean's uncertainty, so what one experiment reveals about timeouts informs every other
//! call site.

use crate::beta::Beta;
use crate::view::{Mode, View};

/// The fitted habits.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeoutHabits {
    /// Call sites whose timeout was seen.
    pub seen: usize,
    /// Synchronous call sites whose timeout was never seen.
    pub censored: usize,
    /// The posterior of π, the share of call sites with a timeout (effective counts).
    pub share: Beta,
    /// μ: the mean log threshold, ln nanoseconds.
    pub log_mean: f64,
    /// σ: the spread of log thresholds (at least [`MIN_LOG_SD`]).
    pub log_sd: f64,
    /// Call sites (seen, and censored ones weighted by their chance of having a timeout) behind
    /// μ: its standard error is σ / √ of this.
    pub effective: f64,
}

/// The least spread of log thresholds: a factor e^0.3 either way.
pub const MIN_LOG_SD: f64 = 0.3;

/// The weight, in call sites, of the prior σ = 1 on the spread of log thresholds.
pub const PRIOR_SITES: f64 = 4.0;

/// The standard normal density.
fn pdf(x: f64) -> f64 {
    (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt()
}

/// The standard normal survival function, `1 − Φ(x)` (via erfc, Numerical Recipes' Chebyshev
/// fit, relative error below 1.2e-7 everywhere).
pub fn normal_sf(x: f64) -> f64 {
    let z = x.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.5 * z);
    let erfc = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 {
        0.5 * erfc
    } else {
        1.0 - 0.5 * erfc
    }
}

/// Fits π, μ, σ to seen log thresholds and censored log durations (see the module docs).
pub fn fit(seen: &[f64], censored: &[f64]) -> Option<TimeoutHabits> {
    let k = seen.len();
    if k == 0 {
        return None;
    }
    let kf = k as f64;
    let mut mu = seen.iter().sum::<f64>() / kf;
    let mut sigma = if k > 1 {
        (seen.iter().map(|x| (x - mu).powi(2)).sum::<f64>() / (kf - 1.0)).sqrt()
    } else {
        1.0
    }
    .max(MIN_LOG_SD);
    let mut pi = 0.5;
    let mut w = vec![0.0; censored.len()];
    for _ in 0..500 {
        // E: each censored site's chance of a timeout above its longest call, and the moments
        // of its log threshold given that.
        let (mut sx, mut sxx, mut sw) = (0.0, 0.0, 0.0);
        for (wj, &c) in w.iter_mut().zip(censored) {
            let a = (c - mu) / sigma;
            let surv = normal_sf(a).max(1e-300);
            *wj = pi * surv / (pi * surv + 1.0 - pi);
            let lambda = pdf(a) / surv;
            let ex = mu + sigma * lambda;
            let exx = mu * mu + sigma * sigma + sigma * lambda * (c + mu);
            sx += *wj * ex;
            sxx += *wj * exx;
            sw += *wj;
        }
        // M, with a Beta(2, 2) prior on π.
        let n = kf + sw;
        let new_pi = (kf + sw + 1.0) / (kf + censored.len() as f64 + 2.0);
        let new_mu = (seen.iter().sum::<f64>() + sx) / n;
        let ss = seen.iter().map(|x| (x - new_mu).powi(2)).sum::<f64>() + sxx - 2.0 * new_mu * sx
            + new_mu * new_mu * sw;
        // A weak prior on σ² (worth PRIOR_SITES sites at σ = 1): a few thresholds that happen to
        // agree do not make the habits look tighter than they are.
        let new_sigma = ((ss.max(0.0) + PRIOR_SITES) / (n + PRIOR_SITES))
            .sqrt()
            .max(MIN_LOG_SD);
        let moved = (new_pi - pi).abs() + (new_mu - mu).abs() + (new_sigma - sigma).abs();
        (pi, mu, sigma) = (new_pi, new_mu, new_sigma);
        if moved < 1e-9 {
            break;
        }
    }
    let sw: f64 = w.iter().sum();
    let without: f64 = w.iter().map(|x| 1.0 - x).sum();
    Some(TimeoutHabits {
        seen: k,
        censored: censored.len(),
        share: Beta::new(1.0 + kf + sw, 1.0 + without)?,
        log_mean: mu,
        log_sd: sigma,
        effective: kf + sw,
    })
}

impl View {
    /// The system's timeout habits (none until some call site's timeout was seen).
    pub fn timeout_habits(&self) -> Option<TimeoutHabits> {
        let mut seen = Vec::new();
        let mut censored = Vec::new();
        for e in self.edges.iter().filter(|e| e.mode != Mode::Asynchronous) {
            match &e.timeout {
                Some(t) if t.median_ms > 0.0 => seen.push((t.median_ms * 1e6).ln()),
                Some(_) => {}
                None => {
                    let longest = e.stats.longest_attempt_ns();
                    if longest > 0.0 {
                        censored.push(longest.ln());
                    }
                }
            }
        }
        fit(&seen, &censored)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A seeded stream of standard normal numbers (Box–Muller on an LCG).
    fn normals(seed: u64, n: usize) -> Vec<f64> {
        let mut x = seed;
        let mut u = || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        (0..n)
            .map(|_| (-2.0 * u().ln()).sqrt() * (std::f64::consts::TAU * u()).cos())
            .collect()
    }

    #[test]
    fn survival_function_known_values() {
        assert!((normal_sf(0.0) - 0.5).abs() < 1e-7);
        assert!((normal_sf(1.959_963_985) - 0.025).abs() < 1e-8);
        assert!((normal_sf(-1.0) - 0.841_344_746).abs() < 1e-7);
        assert!((normal_sf(5.0) / 2.866_515_7e-7 - 1.0).abs() < 1e-5);
    }

    #[test]
    fn habits_are_recovered_from_censored_sites() {
        // 400 sites: 70% have a timeout, ln T ~ N(ln 200 ms, 0.5²). An experiment slowed every
        // call to 300 ms: the timeouts below it were seen, the others (and the sites without a
        // timeout) survived 300 ms.
        let (mu, sigma, d) = ((200e6f64).ln(), 0.5, (300e6f64).ln());
        let z = normals(3, 400);
        let (mut seen, mut censored) = (Vec::new(), Vec::new());
        for (i, z) in z.iter().enumerate() {
            let has = i % 10 < 7;
            let t = mu + sigma * z;
            if has && t < d {
                seen.push(t);
            } else {
                censored.push(d);
            }
        }
        let h = fit(&seen, &censored).unwrap();
        assert!((h.share.mean() - 0.7).abs() < 0.08, "{h:?}");
        assert!((h.log_mean - mu).abs() < 0.15, "{h:?}");
        assert!((h.log_sd - sigma).abs() < 0.15, "{h:?}");
        // The naive mean of the seen thresholds is biased low (only short ones were cut).
        let naive = seen.iter().sum::<f64>() / seen.len() as f64;
        assert!(naive < mu - 0.1, "{naive} vs {mu}");
        // Nothing seen: nothing known.
        assert!(fit(&[], &censored).is_none());
        // Short normal calls say little against timeouts: the share stays high.
        let h = fit(&seen, &vec![(5e6f64).ln(); 100]).unwrap();
        assert!(h.share.mean() > 0.8, "{h:?}");
    }
}
