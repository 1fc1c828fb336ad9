"""Reads the tables `augur export MODEL --out DIR` writes, with polars. Run: python export_example.py DIR

Tested by tests/integration/export.rs (with the venv .ci/run makes from tests/python/requirements.txt).
"""
import sys

import polars as pl

d = sys.argv[1]
nodes = pl.read_parquet(f"{d}/nodes.parquet")
edges = pl.read_parquet(f"{d}/edges.parquet")
posteriors = pl.read_parquet(f"{d}/posteriors.parquet")
candidates = pl.read_parquet(f"{d}/candidates.parquet")

# Endpoints by traffic.
print("endpoints:")
print(nodes.filter(pl.col("endpoint")).sort("traffic_share", descending=True).select("id", "traffic_share", "p50_ms", "p99_ms"))

# Where the model is least sure whether a failure propagates: the widest P(propagate) intervals.
print("least certain call sites:")
print(
    edges.with_columns((pl.col("p_propagate_hi") - pl.col("p_propagate_lo")).alias("width"))
    .sort("width", descending=True)
    .select("from", "to", "p_propagate_mean", "p_propagate_lo", "p_propagate_hi", "p_propagate_evidence")
    .head(5)
)

# Every uncertain parameter in one table: the least certain Beta posteriors.
print("least certain parameters:")
print(
    posteriors.filter(pl.col("family").str.starts_with("beta"))
    .sort("sd", descending=True)
    .select("parameter", "target", "alpha", "beta", "mean", "lo", "hi", "sd", "evidence")
    .head(5)
)
# Each call site's P(propagate) row agrees with its edges row.
joined = edges.join(
    posteriors.filter(pl.col("parameter") == "p_propagate"), on=["from", "to"], how="inner"
)
assert joined.height == edges.height, (joined.height, edges.height)
assert (joined["p_propagate_mean"] - joined["mean"]).abs().max() < 1e-12

# The safe experiments worth the most, joined to what they target.
best = candidates.filter(pl.col("safe")).sort("value_bits", descending=True).head(5)
print("best safe experiments:")
print(best.select("rank", "fault", "value_bits", "harm_failed_requests_hi"))
print(f"rows: nodes={nodes.height} edges={edges.height} posteriors={posteriors.height} candidates={candidates.height}")
