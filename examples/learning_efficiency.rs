//! Learning efficiency: does choosing experiments by augur's recommendation teach the model
//! faster than choosing them at random or round-robin over services?
//!
//! ```sh
//! cargo run --release --example learning_efficiency -- [shop|random] [SEEDS] [STEPS] [PLOT.svg]
//! ```
//!
//! Prints, per strategy, the model's mean absolute error of endpoint error rates over every
//! candidate fault (against the world really run with it) before any experiment and after each,
//! averaged over the seeds; with PLOT.svg, also draws the curves. The loop itself is
//! `tests/integration/learning_loop.rs`, which the test suite runs on a smaller scale.
//!
//! `AUGUR_TRUTH_TRACES` (default 3,000) and `AUGUR_SIM_REQUESTS` (2,000) set the traces per
//! candidate for the truth and the requests simulated per draw; `AUGUR_RECOMMEND_SAMPLES`
//! (32, as `augur recommend`) the posterior draws behind each recommendation; `AUGUR_STRATEGIES` (names,
//! comma-separated, e.g. `augur plan,random`) runs only some of the strategies; `oracle` (greedy
//! hindsight: every candidate tried at every step, the best kept) runs only when named, since it
//! costs a whole step's measurement per candidate.
//!
//! Diagnostics: `AUGUR_ONE_STEP=1` prints, for every candidate, augur's value in bits beside the
//! error reduction it would really bring as the first experiment (an oracle's view);
//! `AUGUR_BREAKDOWN=SPEC` prints each candidate's error before and after the experiment SPEC.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/integration/learning_loop.rs"]
mod learning_loop;

use augur_datasets::{RandomWorldParams, World};
use learning_loop::{mean_curve, run, truth, Curve, LoopConfig, Strategy};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let world_name = args.first().map_or("shop", String::as_str);
    let seeds: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(3);
    let steps: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5);
    let plot = args.get(3);
    let world = match world_name {
        "shop" => World::shop(),
        "random" => World::random(
            5,
            RandomWorldParams {
                services: 20,
                ..RandomWorldParams::default()
            },
        )
        .expect("the random world builds"),
        other => {
            eprintln!("unknown world `{other}`: use shop or random");
            std::process::exit(2);
        }
    };
    // The truth's and the simulation's own noise set a floor under the error; these two
    // environment variables lower it (at a cost in time).
    let env = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let cfg = LoopConfig {
        world: &world,
        learn_traces: 6_000,
        experiment_traces: 1_500,
        truth_traces: env("AUGUR_TRUTH_TRACES", 3_000),
        steps,
        sim: augur_simulator::SimOptions {
            requests: env("AUGUR_SIM_REQUESTS", 2_000),
            samples: 32,
            seed: 11,
        },
        recommend_samples: env("AUGUR_RECOMMEND_SAMPLES", 32),
    };
    let strategies: Vec<Strategy> = match std::env::var("AUGUR_STRATEGIES") {
        Ok(names) => {
            let names: Vec<&str> = names.split(',').map(str::trim).collect();
            Strategy::ALL
                .into_iter()
                .chain([Strategy::Oracle])
                .filter(|s| names.contains(&s.name()))
                .collect()
        }
        Err(_) => Strategy::ALL.to_vec(),
    };
    let started = std::time::Instant::now();
    let base = learning_loop::base_model(&cfg, 0).view();
    let truth = truth(&cfg, &base);
    let world_truth = world.static_truth();
    for (f, t) in learning_loop::surprising_sites(&world, &base) {
        let (Some(e), Some(w)) = (base.edge(&f, &t), world_truth.edge(&f, &t)) else {
            continue;
        };
        eprintln!(
            "surprising call site: {f} -> {t}: believed P(propagate) {:.2} [{:.2}, {:.2}], truly {:.2}",
            e.p_propagate.interval.mean, e.p_propagate.interval.lo, e.p_propagate.interval.hi, w.p_propagate
        );
    }
    eprintln!(
        "{world_name}: {} candidate faults, truth measured in {:.1}s",
        truth.candidates.len(),
        started.elapsed().as_secs_f64()
    );
    if let Some(spec) = std::env::var_os("AUGUR_BREAKDOWN") {
        // Diagnostic: each candidate's error before and after one experiment.
        let spec: augur_simulator::FaultSpec = spec.to_str().unwrap().parse().unwrap();
        let model = learning_loop::base_model(&cfg, 0);
        let after = learning_loop::refine_once(&cfg, &model, &spec, 0);
        let b = learning_loop::per_candidate(&model.view(), &truth, &cfg.sim);
        let a = learning_loop::per_candidate(&after.view(), &truth, &cfg.sim);
        for ((c, x), (_, y)) in b.iter().zip(&a) {
            println!("{c}\t{x:.4}\t{y:.4}");
        }
        return;
    }
    if std::env::var_os("AUGUR_ONE_STEP").is_some() {
        // Diagnostic: the MAE after each candidate as the first experiment, beside augur's value.
        let view = learning_loop::base_model(&cfg, 0).view();
        let opts = augur_recommender::Options {
            sim: cfg.sim.clone(),
            ..augur_recommender::Options::default()
        };
        let rec = augur_recommender::recommend::recommend(&view, &[], &opts).expect("ranks");
        let before = learning_loop::mae(&view, &truth, &cfg.sim);
        for (spec, after) in learning_loop::one_step_gains(&cfg, &truth, 0) {
            let bits = rec
                .experiments
                .iter()
                .find(|e| e.fault == spec)
                .map_or(f64::NAN, |e| e.value_bits);
            println!("{spec}\t{bits:.3}\t{:.5}", before - after);
        }
        return;
    }
    let mut curves: Vec<Curve> = Vec::new();
    for seed in 0..seeds {
        for &s in &strategies {
            let c = run(&cfg, s, seed, &truth);
            eprintln!(
                "seed {seed} {:>11}: MAE {}  chose {}",
                s.name(),
                c.mae
                    .iter()
                    .map(|m| format!("{m:.4}"))
                    .collect::<Vec<_>>()
                    .join(" "),
                c.chosen.join(", ")
            );
            curves.push(c);
        }
    }
    println!(
        "| strategy | {} |",
        (0..=steps)
            .map(|k| format!("K={k}"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|---|{}", "---:|".repeat(steps + 1));
    let mut means = Vec::new();
    for &s in &strategies {
        let of: Vec<&Curve> = curves.iter().filter(|c| c.strategy == s).collect();
        let m = mean_curve(&of);
        println!(
            "| {} | {} |",
            s.name(),
            m.iter()
                .map(|x| format!("{x:.4}"))
                .collect::<Vec<_>>()
                .join(" | ")
        );
        means.push((s, m));
    }
    for (title, of) in [
        (
            "most surprising call sites tested",
            (|c: &Curve| c.surprising_tested.iter().map(|&x| x as f64).collect())
                as fn(&Curve) -> Vec<f64>,
        ),
        ("true timeouts known", |c: &Curve| {
            c.timeouts_known.iter().map(|&x| x as f64).collect()
        }),
    ] {
        println!("\n{title} (mean over seeds):\n");
        println!(
            "| strategy | {} |",
            (0..=steps)
                .map(|k| format!("K={k}"))
                .collect::<Vec<_>>()
                .join(" | ")
        );
        println!("|---|{}", "---:|".repeat(steps + 1));
        for &s in &strategies {
            let cs: Vec<&Curve> = curves.iter().filter(|c| c.strategy == s).collect();
            let m = learning_loop::mean_of(&cs, of);
            println!(
                "| {} | {} |",
                s.name(),
                m.iter()
                    .map(|x| format!("{x:.1}"))
                    .collect::<Vec<_>>()
                    .join(" | ")
            );
        }
    }
    eprintln!("{:.1}s in all", started.elapsed().as_secs_f64());
    if let Some(path) = plot {
        std::fs::write(path, svg(world_name, &means)).expect("the plot is written");
        eprintln!("plot written to {path}");
    }
}

/// The curves as a small SVG line chart.
fn svg(title: &str, means: &[(Strategy, Vec<f64>)]) -> String {
    let (w, h, left, bottom, top, right) = (560.0, 320.0, 60.0, 40.0, 30.0, 130.0);
    let steps = means.iter().map(|(_, m)| m.len()).max().unwrap_or(1).max(2) - 1;
    let ymax = means
        .iter()
        .flat_map(|(_, m)| m.iter().copied())
        .fold(0.0f64, f64::max)
        * 1.1;
    let x = |k: usize| left + (w - left - right) * k as f64 / steps as f64;
    let y = |v: f64| top + (h - top - bottom) * (1.0 - v / ymax.max(1e-9));
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{left}\" y=\"18\" font-size=\"14\">{title}: error of predicted endpoint error rates over every candidate fault</text>\n"
    );
    s.push_str(&format!(
        "<line x1=\"{left}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n<line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{}\" stroke=\"black\"/>\n",
        h - bottom, w - right, h - bottom, h - bottom
    ));
    for k in 0..=steps {
        s.push_str(&format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{k}</text>\n",
            x(k),
            h - bottom + 16.0
        ));
    }
    s.push_str(&format!(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">experiments run (K)</text>\n",
        (left + w - right) / 2.0,
        h - 6.0
    ));
    for i in 0..=4 {
        let v = ymax * i as f64 / 4.0;
        s.push_str(&format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{v:.3}</text>\n",
            left - 6.0,
            y(v) + 4.0
        ));
    }
    let colours = ["#c0392b", "#e67e22", "#7f8c8d", "#2980b9", "#27ae60"];
    for (i, (strategy, m)) in means.iter().enumerate() {
        let points: Vec<String> = m
            .iter()
            .enumerate()
            .map(|(k, v)| format!("{:.1},{:.1}", x(k), y(*v)))
            .collect();
        s.push_str(&format!(
            "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\" points=\"{}\"/>\n<text x=\"{}\" y=\"{}\" fill=\"{}\">{}</text>\n",
            colours[i % colours.len()],
            points.join(" "),
            w - right + 8.0,
            top + 16.0 * i as f64 + 10.0,
            colours[i % colours.len()],
            strategy.name()
        ));
    }
    s.push_str("</svg>\n");
    s
}
