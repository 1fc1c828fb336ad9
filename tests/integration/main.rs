//! End-to-end tests: one binary, one file per behaviour. They drive the real `augur` binary on
//! real files (and use the library crates only to check what the files hold).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod backtest;
mod bad_input;
mod common;
mod export;
mod fixtures;
mod formats;
mod learn_graph;
mod learning;
mod learning_loop;
mod model_ops;
mod model_truth;
mod outcome;
mod progress;
mod recommend;
mod report;
mod serve;
mod sim_truth;
mod simulate;
mod webdriver;
