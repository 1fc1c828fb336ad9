"""What a data scientist would write instead of `augur learn`: service-to-service edges with call
counts and p50/p99 latency from an OTLP JSON Lines file (the Collector's file exporter output),
with polars. Used by docs/PERFORMANCE.md to compare speed and memory on the same file.

    python benches/compare/polars_edges.py traces.jsonl
"""
import sys
import time

import polars as pl

started = time.time()
path = sys.argv[1]

spans = (
    pl.scan_ndjson(path, infer_schema_length=1000)
    .select(pl.col("resourceSpans").explode())
    .select(
        pl.col("resourceSpans").struct.field("resource").struct.field("attributes").alias("attrs"),
        pl.col("resourceSpans").struct.field("scopeSpans").alias("scopes"),
    )
    .with_columns(
        pl.col("attrs")
        .list.eval(
            pl.element().filter(pl.element().struct.field("key") == "service.name")
            .struct.field("value").struct.field("stringValue")
        )
        .list.first()
        .alias("service")
    )
    .explode("scopes")
    .select("service", pl.col("scopes").struct.field("spans").alias("spans"))
    .explode("spans")
    .select(
        "service",
        pl.col("spans").struct.field("traceId").alias("trace_id"),
        pl.col("spans").struct.field("spanId").alias("span_id"),
        pl.col("spans").struct.field("parentSpanId").alias("parent_id"),
        pl.col("spans").struct.field("kind").alias("kind"),
        (
            pl.col("spans").struct.field("endTimeUnixNano").cast(pl.Int64)
            - pl.col("spans").struct.field("startTimeUnixNano").cast(pl.Int64)
        ).alias("duration_ns"),
    )
)

parents = spans.select(
    "trace_id",
    pl.col("span_id").alias("parent_id"),
    pl.col("service").alias("caller"),
)
edges = (
    spans.join(parents, on=["trace_id", "parent_id"], how="inner")
    .filter(pl.col("caller") != pl.col("service"))
    .group_by("caller", pl.col("service").alias("callee"))
    .agg(
        pl.len().alias("calls"),
        (pl.col("duration_ns").quantile(0.5) / 1e6).alias("p50_ms"),
        (pl.col("duration_ns").quantile(0.99) / 1e6).alias("p99_ms"),
    )
    .sort("caller", "callee")
    .collect()
)
print(edges)
print(f"{len(edges)} service edges in {time.time() - started:.2f}s", file=sys.stderr)
