//! Small Parquet tables of derived data (a model's nodes and edges, ranked experiments) for data
//! scientists: named, typed columns written as one Parquet file that polars, DuckDB or pandas read.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, BooleanArray, Float64Array, RecordBatch, StringArray, UInt64Array};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::IngestError;

/// One column's values.
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    /// Text.
    Str(Vec<String>),
    /// Text, nullable.
    OptStr(Vec<Option<String>>),
    /// Floating point.
    F64(Vec<f64>),
    /// Floating point, nullable.
    OptF64(Vec<Option<f64>>),
    /// Counts.
    U64(Vec<u64>),
    /// Counts, nullable.
    OptU64(Vec<Option<u64>>),
    /// Flags.
    Bool(Vec<bool>),
}

impl Column {
    fn len(&self) -> usize {
        match self {
            Column::Str(v) => v.len(),
            Column::OptStr(v) => v.len(),
            Column::F64(v) => v.len(),
            Column::OptF64(v) => v.len(),
            Column::U64(v) => v.len(),
            Column::OptU64(v) => v.len(),
            Column::Bool(v) => v.len(),
        }
    }

    fn into_array(self) -> (DataType, bool, ArrayRef) {
        match self {
            Column::Str(v) => (DataType::Utf8, false, Arc::new(StringArray::from(v))),
            Column::OptStr(v) => (DataType::Utf8, true, Arc::new(StringArray::from(v))),
            Column::F64(v) => (DataType::Float64, false, Arc::new(Float64Array::from(v))),
            Column::OptF64(v) => (DataType::Float64, true, Arc::new(Float64Array::from(v))),
            Column::U64(v) => (DataType::UInt64, false, Arc::new(UInt64Array::from(v))),
            Column::OptU64(v) => (DataType::UInt64, true, Arc::new(UInt64Array::from(v))),
            Column::Bool(v) => (DataType::Boolean, false, Arc::new(BooleanArray::from(v))),
        }
    }
}

/// Writes the columns (all of one length) as a Parquet file; returns the rows written.
pub fn write_table(path: &Path, columns: Vec<(&str, Column)>) -> Result<usize, IngestError> {
    let write_err = |reason: String| IngestError::Write {
        path: path.to_path_buf(),
        reason,
    };
    let rows = columns.first().map_or(0, |(_, c)| c.len());
    if let Some((name, c)) = columns.iter().find(|(_, c)| c.len() != rows) {
        return Err(write_err(format!(
            "column `{name}` has {} rows, the table {rows}",
            c.len()
        )));
    }
    let mut fields = Vec::new();
    let mut arrays = Vec::new();
    for (name, c) in columns {
        let (ty, nullable, array) = c.into_array();
        fields.push(Field::new(name, ty, nullable));
        arrays.push(array);
    }
    let schema = Arc::new(Schema::new(fields));
    let batch =
        RecordBatch::try_new(Arc::clone(&schema), arrays).map_err(|e| write_err(e.to_string()))?;
    let file = File::create(path).map_err(|e| IngestError::io(path, e))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let mut w =
        ArrowWriter::try_new(file, schema, Some(props)).map_err(|e| write_err(e.to_string()))?;
    w.write(&batch).map_err(|e| write_err(e.to_string()))?;
    w.close().map_err(|e| write_err(e.to_string()))?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float64Type, UInt64Type};
    use arrow_array::Array;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    #[test]
    fn a_table_reads_back_with_its_types_and_nulls() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        let n = write_table(
            &path,
            vec![
                ("id", Column::Str(vec!["a".into(), "b".into()])),
                ("x", Column::OptF64(vec![Some(0.5), None])),
                ("n", Column::U64(vec![3, 4])),
                ("ok", Column::Bool(vec![true, false])),
            ],
        )
        .unwrap();
        assert_eq!(n, 2);
        let mut r = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap())
            .unwrap()
            .build()
            .unwrap();
        let b = r.next().unwrap().unwrap();
        assert_eq!(b.num_rows(), 2);
        assert_eq!(b.column(0).as_string::<i32>().value(1), "b");
        let x = b.column(1).as_primitive::<Float64Type>();
        assert_eq!((x.value(0), x.is_null(1)), (0.5, true));
        assert_eq!(b.column(2).as_primitive::<UInt64Type>().value(1), 4);
        assert!(b.column(3).as_boolean().value(0));
        // Ragged columns are an error, not a corrupt file.
        let bad = write_table(
            &dir.path().join("bad.parquet"),
            vec![("a", Column::U64(vec![1])), ("b", Column::U64(vec![]))],
        );
        assert!(bad.is_err());
    }
}
