//! The span table's Arrow schema: the contract between augur and every tool that reads its
//! Parquet files (polars, DuckDB, Spark, DataFusion).
//!
//! | column | type | notes |
//! |---|---|---|
//! | `trace_id` | fixed_size_binary(16) | |
//! | `span_id` | fixed_size_binary(8) | |
//! | `parent_span_id` | fixed_size_binary(8), nullable | null for a root |
//! | `service` | dictionary(int32, utf8) | `service.name` |
//! | `name` | dictionary(int32, utf8) | the span name |
//! | `kind` | dictionary(int32, utf8) | `unspecified`, `internal`, `server`, `client`, `producer`, `consumer` |
//! | `start_ns` | int64 | nanoseconds since the Unix epoch |
//! | `end_ns` | int64 | |
//! | `status` | dictionary(int32, utf8) | `unset`, `ok`, `error`, `unknown` (the format records none) |
//! | `peer` | dictionary(int32, utf8), nullable | see [`crate::PEER_ATTRIBUTES`] |
//! | `http_route`, `rpc_method`, `error_type` | dictionary(int32, utf8), nullable | the attributes |
//! | `experiment` | dictionary(int32, utf8), nullable | the fault active, for outcome traces |
//! | `peer_kind` | dictionary(int32, utf8), nullable | `database` (`db.system` or `db.system.name` recorded) or `messaging` (`messaging.*`); null otherwise |
//! | `link_trace_id`, `link_span_id` | fixed_size_binary(16), fixed_size_binary(8), nullable | the span's first link to a span of another trace (a consumer's producer); files without these columns read as no links |

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef};

/// The version of the span table schema, stored in the Parquet metadata as `augur.span_table`.
pub const SPAN_TABLE_VERSION: &str = "1";

fn dict() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

/// The span table's schema.
pub fn span_table_schema() -> SchemaRef {
    let fields = vec![
        Field::new("trace_id", DataType::FixedSizeBinary(16), false),
        Field::new("span_id", DataType::FixedSizeBinary(8), false),
        Field::new("parent_span_id", DataType::FixedSizeBinary(8), true),
        Field::new("service", dict(), false),
        Field::new("name", dict(), false),
        Field::new("kind", dict(), false),
        Field::new("start_ns", DataType::Int64, false),
        Field::new("end_ns", DataType::Int64, false),
        Field::new("status", dict(), false),
        Field::new("peer", dict(), true),
        Field::new("http_route", dict(), true),
        Field::new("rpc_method", dict(), true),
        Field::new("error_type", dict(), true),
        Field::new("experiment", dict(), true),
        Field::new("peer_kind", dict(), true),
        Field::new("link_trace_id", DataType::FixedSizeBinary(16), true),
        Field::new("link_span_id", DataType::FixedSizeBinary(8), true),
    ];
    let metadata: std::collections::HashMap<String, String> = [(
        "augur.span_table".to_string(),
        SPAN_TABLE_VERSION.to_string(),
    )]
    .into_iter()
    .collect();
    Arc::new(Schema::new_with_metadata(fields, metadata))
}
