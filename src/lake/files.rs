//! Base files: names, Parquet encoding with the footers Hudi readers use, and
//! reading slices back (whole, or only the key and position columns).
//!
//! Names are `<fileId>_<writeToken>_<instant>.parquet` with a `fileId` of
//! `<uuid>-0` (no `_`: Hudi splits names on it). Footers carry
//! `hoodie_min_record_key` / `hoodie_max_record_key`, so Java's BLOOM index
//! range pruning works; statistics are on for every column.

use std::sync::Arc;

use super::bloom::DynamicBloom;
use arrow_array::{Array, RecordBatch, StringArray};
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, GzipLevel, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use super::layout::{COMMIT_SEQNO, POSITION, RECORD_KEY};
use crate::config::model::ParquetCompression;

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error("{0}")]
    Layout(String),
}

/// A new file-group id.
pub fn new_file_id() -> String {
    format!("{}-0", uuid::Uuid::new_v4())
}

/// The base file name of a slice.
pub fn base_file_name(file_id: &str, instant: &str) -> String {
    format!("{file_id}_0-0-0_{instant}.parquet")
}

/// `(fileId, instant)` of a base file name.
pub fn parse_base_file_name(name: &str) -> Option<(String, String)> {
    let stem = name.strip_suffix(".parquet")?;
    let mut parts = stem.split('_');
    let file_id = parts.next()?;
    let _token = parts.next()?;
    let instant = parts.next()?;
    if parts.next().is_some()
        || file_id.is_empty()
        || instant.is_empty()
        || !instant.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    Some((file_id.to_string(), instant.to_string()))
}

fn properties(
    compression: ParquetCompression,
    footer: Vec<(&'static str, String)>,
) -> WriterProperties {
    let codec = match compression {
        ParquetCompression::None => Compression::UNCOMPRESSED,
        ParquetCompression::Snappy => Compression::SNAPPY,
        ParquetCompression::Zstd => Compression::ZSTD(ZstdLevel::default()),
        ParquetCompression::Gzip => Compression::GZIP(GzipLevel::default()),
    };
    let mut kv = vec![KeyValue::new(
        "writer.model.name".to_string(),
        "tidewater".to_string(),
    )];
    kv.extend(
        footer
            .into_iter()
            .map(|(k, v)| KeyValue::new(k.to_string(), v)),
    );
    let unique = |name: &str| ColumnPath::from(vec![name.to_string()]);
    WriterProperties::builder()
        .set_compression(codec)
        .set_statistics_enabled(EnabledStatistics::Chunk)
        .set_max_row_group_row_count(Some(250_000))
        // Values unique per row: a dictionary only costs time.
        .set_column_dictionary_enabled(unique(COMMIT_SEQNO), false)
        .set_column_dictionary_enabled(unique(RECORD_KEY), false)
        .set_column_dictionary_enabled(unique(POSITION), false)
        .set_created_by(concat!("tidewater ", env!("CARGO_PKG_VERSION")).to_string())
        .set_key_value_metadata(Some(kv))
        .build()
}

/// Encodes one base file, with the record keys' bloom filter and key range
/// in its footer. `carried` is the previous version's filter when the
/// first batch holds that version's surviving rows: the keys of the other
/// batches are added to it when [`DynamicBloom::can_extend`] allows,
/// instead of hashing every key again.
pub fn encode(
    schema: &arrow_schema::SchemaRef,
    batches: &[RecordBatch],
    compression: ParquetCompression,
    carried: Option<DynamicBloom>,
) -> Result<Vec<u8>, FileError> {
    let mut keys = Vec::with_capacity(batches.len());
    for batch in batches {
        let column = batch
            .column_by_name(RECORD_KEY)
            .and_then(|c| c.as_any().downcast_ref::<StringArray>())
            .ok_or_else(|| FileError::Layout("no record key column".into()))?;
        keys.push(column);
    }
    let count: usize = keys.iter().map(|k| k.len() - k.null_count()).sum();
    let fresh_rows: usize = keys.iter().skip(1).map(|k| k.len()).sum();
    let carried = carried
        .filter(|f| f.can_extend(count, fresh_rows))
        .map(|f| {
            let fresh: Vec<&str> = keys
                .iter()
                .skip(1)
                .flat_map(|k| k.iter().flatten())
                .collect();
            (f, fresh)
        });
    let footer = super::bloom::footer(count, keys.iter().flat_map(|k| k.iter().flatten()), carried);
    let size: usize = batches.iter().map(RecordBatch::get_array_memory_size).sum();
    let mut out = Vec::with_capacity(size / 3 + 1024);
    let mut writer = ArrowWriter::try_new(
        &mut out,
        schema.clone(),
        Some(properties(compression, footer)),
    )?;
    for batch in batches {
        writer.write(batch)?;
    }
    writer.close()?;
    Ok(out)
}

/// Decodes a whole base file into one batch.
pub fn decode(bytes: Bytes) -> Result<RecordBatch, FileError> {
    decode_base_file(bytes).map(|(batch, _)| batch)
}

/// Decodes a whole base file into one batch, with the bloom filter of its
/// footer (if it has a readable one).
pub fn decode_base_file(bytes: Bytes) -> Result<(RecordBatch, Option<DynamicBloom>), FileError> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes)?;
    let kv = builder.metadata().file_metadata().key_value_metadata();
    let value = |key: &str| {
        kv.and_then(|kv| kv.iter().find(|e| e.key == key))
            .and_then(|e| e.value.as_deref())
    };
    let filter = (value(super::bloom::FOOTER_TYPE) == Some("DYNAMIC_V0"))
        .then(|| value(super::bloom::FOOTER_FILTER))
        .flatten()
        .and_then(DynamicBloom::from_base64);
    // One batch for the whole file: no concatenation afterwards.
    let rows = usize::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
    let builder = builder.with_batch_size(rows.max(1));
    let schema = builder.schema().clone();
    let batches: Vec<RecordBatch> = builder.build()?.collect::<Result<_, _>>()?;
    let batch = match <[RecordBatch; 1]>::try_from(batches) {
        Ok([batch]) => batch,
        Err(batches) => arrow_select::concat::concat_batches(&schema, &batches)?,
    };
    Ok((batch, filter))
}

/// The record keys and positions of a base file, in row order.
pub fn decode_keys(bytes: Bytes) -> Result<(Vec<String>, Vec<String>), FileError> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes)?.with_batch_size(65_536);
    let schema = builder.parquet_schema();
    let indices: Vec<usize> = schema
        .columns()
        .iter()
        .enumerate()
        .filter(|(_, c)| c.name() == RECORD_KEY || c.name() == POSITION)
        .map(|(i, _)| i)
        .collect();
    let mask = ProjectionMask::leaves(schema, indices);
    let reader = builder.with_projection(mask).build()?;
    let mut keys = Vec::new();
    let mut positions = Vec::new();
    for batch in reader {
        let batch = batch?;
        let column = |name: &str| -> Result<Arc<dyn Array>, FileError> {
            batch
                .column_by_name(name)
                .cloned()
                .ok_or_else(|| FileError::Layout(format!("no {name} column")))
        };
        let k = column(RECORD_KEY)?;
        let p = column(POSITION)?;
        let k = k
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| FileError::Layout("record keys are not strings".into()))?;
        let p = p
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| FileError::Layout("positions are not strings".into()))?;
        keys.extend(k.iter().map(|v| v.unwrap_or_default().to_string()));
        positions.extend(p.iter().map(|v| v.unwrap_or_default().to_string()));
    }
    Ok((keys, positions))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_file_names_round_trip() {
        let id = new_file_id();
        assert!(!id.contains('_'));
        let name = base_file_name(&id, "20240101000000000");
        assert_eq!(
            parse_base_file_name(&name),
            Some((id, "20240101000000000".to_string()))
        );
        assert_eq!(
            parse_base_file_name(
                "a22e8257-e249-45e9-ba46-115bc85adcba-0_1-140-199_20240418173213674.parquet"
            ),
            Some((
                "a22e8257-e249-45e9-ba46-115bc85adcba-0".into(),
                "20240418173213674".into()
            ))
        );
        assert_eq!(parse_base_file_name(".hoodie_partition_metadata"), None);
        assert_eq!(parse_base_file_name("x.parquet"), None);
    }
}
