//! The bytes of one S3 flow log file (spec 8.2): gzip-compressed plain text
//! (the header line, then one record a line), or Parquet whose columns are
//! the format's fields in its order, gzip-compressed, with `-` as NULL.
//!
//! Both take the rendered lines (`line`): a line is the record's canonical
//! form, and its space-separated tokens are the Parquet cells (no value a
//! field takes contains a space). This module owns file bodies only: it must
//! not name keys (`s3`) nor decide when a file is cut (`publisher`). It
//! writes to memory, never to disk.

use std::io::Write as _;
use std::sync::Arc;

use arrow_array::builder::{Int32Builder, Int64Builder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field as ArrowField, Schema};
use flate2::Compression as GzLevel;
use flate2::write::GzEncoder;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, GzipLevel};
use parquet::file::properties::WriterProperties;

use crate::line::{ColumnType, LineFormat};

/// Why a file could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("could not gzip the flow log file: {0}")]
    Gzip(#[from] std::io::Error),
    #[error("could not build the flow log's Parquet columns: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error("could not write the flow log's Parquet file: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
}

/// A plain-text file: the header line, then the lines, gzipped.
pub fn text_gz(format: &LineFormat, lines: &[String]) -> Result<Vec<u8>, EncodeError> {
    let mut gz = GzEncoder::new(Vec::new(), GzLevel::default());
    gz.write_all(format.header().as_bytes())?;
    gz.write_all(b"\n")?;
    for line in lines {
        gz.write_all(line.as_bytes())?;
        gz.write_all(b"\n")?;
    }
    Ok(gz.finish()?)
}

/// The Arrow schema of a format's Parquet files: one nullable column per
/// field, named and typed as AWS's Athena table for Parquet flow logs.
pub fn parquet_schema(format: &LineFormat) -> Schema {
    Schema::new(
        format
            .fields()
            .iter()
            .map(|f| {
                let ty = match f.column_type() {
                    ColumnType::Int32 => DataType::Int32,
                    ColumnType::Int64 => DataType::Int64,
                    ColumnType::Utf8 => DataType::Utf8,
                };
                ArrowField::new(f.column_name(), ty, true)
            })
            .collect::<Vec<_>>(),
    )
}

/// A Parquet file of the lines (rendered with `format`), gzip-compressed
/// columns.
pub fn parquet(format: &LineFormat, lines: &[String]) -> Result<Vec<u8>, EncodeError> {
    let schema = Arc::new(parquet_schema(format));
    let mut tokens: Vec<std::str::Split<'_, char>> = lines.iter().map(|l| l.split(' ')).collect();
    let mut builders: Vec<Builder> = format
        .fields()
        .iter()
        .map(|f| Builder::new(f.column_type(), lines.len()))
        .collect();
    // Column by column: each line's tokens are consumed in field order.
    for b in &mut builders {
        for t in tokens.iter_mut() {
            b.append(t.next());
        }
    }
    let columns = builders
        .into_iter()
        .map(Builder::finish)
        .collect::<Vec<_>>();
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    let props = WriterProperties::builder()
        .set_compression(Compression::GZIP(GzipLevel::default()))
        .build();
    let mut writer = ArrowWriter::try_new(Vec::new(), schema, Some(props))?;
    writer.write(&batch)?;
    Ok(writer.into_inner()?)
}

/// One column being built; `-` (or a token that is not of the column's
/// type, which `LineFormat` never writes) is NULL.
enum Builder {
    Int32(Int32Builder),
    Int64(Int64Builder),
    Utf8(StringBuilder),
}

impl Builder {
    fn new(ty: ColumnType, rows: usize) -> Builder {
        match ty {
            ColumnType::Int32 => Builder::Int32(Int32Builder::with_capacity(rows)),
            ColumnType::Int64 => Builder::Int64(Int64Builder::with_capacity(rows)),
            ColumnType::Utf8 => Builder::Utf8(StringBuilder::with_capacity(rows, rows * 16)),
        }
    }

    fn append(&mut self, token: Option<&str>) {
        let token = token.filter(|t| *t != "-");
        match self {
            Builder::Int32(b) => b.append_option(token.and_then(|t| t.parse().ok())),
            Builder::Int64(b) => b.append_option(token.and_then(|t| t.parse().ok())),
            Builder::Utf8(b) => b.append_option(token),
        }
    }

    fn finish(self) -> ArrayRef {
        match self {
            Builder::Int32(mut b) => Arc::new(b.finish()),
            Builder::Int64(mut b) => Arc::new(b.finish()),
            Builder::Utf8(mut b) => Arc::new(b.finish()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use arrow_array::{Array, Int32Array, Int64Array, StringArray};
    use flate2::read::GzDecoder;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    use super::*;
    use crate::line::tests::{ctx, nodata_record, ok_record};

    fn rows(format: &LineFormat) -> Vec<String> {
        [ok_record(), nodata_record()]
            .iter()
            .map(|r| format.render(&ctx(), "us-east-1", r))
            .collect()
    }

    #[test]
    fn text_round_trip_has_the_header_first() {
        // spec 8.2: plain-text files are gzip-compressed, header line first.
        let fmt = LineFormat::default();
        let body = text_gz(&fmt, &rows(&fmt)).unwrap();
        assert_eq!(&body[..2], &[0x1f, 0x8b]);
        let mut text = String::new();
        GzDecoder::new(&body[..]).read_to_string(&mut text).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status",
                "2 123456789010 eni-1235b8ca123456789 172.31.16.139 172.31.16.21 20641 22 6 20 4249 1418530010 1418530070 ACCEPT OK",
                "2 123456789010 eni-1235b8ca123456789 - - - - - - - 1418530010 1418530070 - NODATA",
            ]
        );
    }

    #[test]
    fn parquet_round_trip() {
        // spec 8.2 acceptance: a Parquet reader reads the file; columns are
        // the format's fields in order, Athena-typed, gzip, `-` as NULL.
        let fmt = LineFormat::parse(
            "${version} ${srcport} ${protocol} ${srcaddr} ${start} ${tcp-flags} ${traffic-path} ${instance-id} ${reject-reason}",
        )
        .unwrap();
        let body = parquet(&fmt, &rows(&fmt)).unwrap();
        assert_eq!(&body[..4], b"PAR1");

        let file = SerializedFileReader::new(bytes::Bytes::from(body.clone())).unwrap();
        let col = file.metadata().row_group(0).column(0);
        assert_eq!(col.compression(), Compression::GZIP(GzipLevel::default()));

        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(body))
            .unwrap()
            .build()
            .unwrap();
        let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
        assert_eq!(batches.len(), 1);
        let b = &batches[0];
        let schema = b.schema();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(
            names,
            [
                "version",
                "srcport",
                "protocol",
                "srcaddr",
                "start",
                "tcp_flags",
                "traffic_path",
                "instance_id",
                "reject_reason"
            ]
        );
        let types: Vec<DataType> = schema
            .fields()
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        use DataType::{Int32, Int64, Utf8};
        assert_eq!(
            types,
            [Int32, Int32, Int64, Utf8, Int64, Int32, Int32, Utf8, Utf8]
        );
        assert_eq!(b.num_rows(), 2);

        let i32col = |i: usize| {
            b.column(i)
                .as_any()
                .downcast_ref::<Int32Array>()
                .unwrap()
                .clone()
        };
        let i64col = |i: usize| {
            b.column(i)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .clone()
        };
        let strcol = |i: usize| {
            b.column(i)
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap()
                .clone()
        };
        assert_eq!(i32col(0).value(0), 8, "reject-reason makes it version 8");
        assert_eq!(i32col(1).value(0), 20641);
        assert!(i32col(1).is_null(1), "NODATA srcport is NULL");
        assert_eq!(i64col(2).value(0), 6);
        assert_eq!(strcol(3).value(0), "172.31.16.139");
        assert!(strcol(3).is_null(1));
        assert_eq!(i64col(4).value(1), 1418530010);
        assert_eq!(i32col(5).value(0), 3);
        assert_eq!(i32col(6).value(0), 2);
        assert_eq!(strcol(7).value(0), "i-0a1b2c3d4e5f60718");
        assert_eq!(strcol(8).null_count(), 2);
    }
}
