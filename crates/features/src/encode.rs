//! Parquet row groups encoded and compressed on two threads, for the streamed writer of
//! [`write_features`](crate::write_features).
//!
//! Pages are polars-parquet's own (`array_to_columns`) with the options polars' `ParquetWriter` uses, and the file
//! is byte for byte what that writer makes of the same row groups (tested); three things are done here instead:
//! - f64 columns are PLAIN-encoded without first estimating their cardinality: polars tries a dictionary for every
//!   primitive column and falls back to PLAIN when more than 3/4 of the values are distinct, which feature columns
//!   always are.
//! - Their page min/max statistics are computed here: polars-compute's min/max kernel on stable Rust is a scalar
//!   fold (about 6 ns a value, an eighth of a feature build's CPU); [`min_max`] is a lane-parallel one.
//! - Pages are compressed with one zstd context per thread and call: polars-parquet's `Compressor` makes a fresh
//!   context (megabytes of tables, from the C allocator: fresh pages the kernel zeroes) and a zero-filled output
//!   buffer for every page. Same library, level and frame, so the same bytes.

use polars::prelude::*;
use polars_arrow::array::{Array, PrimitiveArray};
use polars_parquet::parquet::CowBuffer;
use polars_parquet::parquet::compression::Compression;
use polars_parquet::parquet::page::{CompressedDictPage, DataPageHeader};
use polars_parquet::parquet::statistics::PrimitiveStatistics;
use polars_parquet::write::{
    CompressedDataPage, CompressedPage, Encoding, Page, ParquetType, StatisticsOptions, Version, WriteOptions,
    ZstdLevel, array_to_columns,
};

use crate::error::Result;

/// A row group: its rows and its columns' compressed pages, in column order.
pub(crate) type RowGroup = (u64, Vec<Vec<CompressedPage>>);

/// The row groups of `df` (aligned chunks, one row group each) encoded and compressed as polars' `ParquetWriter`
/// does with `ParquetCompression::Zstd(level)` and its defaults (statistics, page size, format v1), the columns
/// split between two threads: `BatchedWriter::write_batch` compresses every page on the calling thread.
pub(crate) fn encode_row_groups(
    df: &DataFrame,
    fields: &[ParquetType],
    level: Option<ZstdLevel>,
) -> Result<Vec<RowGroup>> {
    let arrow_schema = df.schema().to_arrow(CompatLevel::newest());
    let encodings = polars::io::parquet::write::get_encodings(&arrow_schema);
    let options = WriteOptions {
        statistics: StatisticsOptions::default(),
        compression: ParquetCompression::Zstd(level).into(),
        version: Version::V1,
        data_page_size: None,
    };
    // polars-parquet's default level (`unwrap_or_default`: 0, zstd's own default).
    let level = level.map(|l| l.compression_level()).unwrap_or_default();
    let mut groups = Vec::new();
    for batch in df.iter_chunks(CompatLevel::newest(), false) {
        if batch.is_empty() {
            continue;
        }
        let rows = batch.len() as u64;
        let encode = |range: std::ops::Range<usize>| -> Result<Vec<Vec<CompressedPage>>> {
            let mut zstd = zstd::bulk::Compressor::new(level).map_err(|e| zstd_error(&e))?;
            let mut out = Vec::new();
            for i in range {
                let array = batch.columns()[i].as_ref();
                match array.as_any().downcast_ref::<PrimitiveArray<f64>>() {
                    Some(values) => {
                        let computed = StatisticsOptions { min_value: false, max_value: false, ..options.statistics };
                        let plain = WriteOptions { statistics: computed, ..options };
                        for pages in array_to_columns(array, fields[i].clone(), plain, &[Encoding::Plain])? {
                            let mut offset = 0;
                            let pages = pages.map(|page| -> Result<CompressedPage> {
                                let page = page?;
                                let n = page_rows(&page);
                                let page = with_min_max(page, &values.clone().sliced(offset, n), options.statistics);
                                offset += n;
                                compress(&mut zstd, page)
                            });
                            out.push(pages.collect::<Result<_>>()?);
                        }
                    }
                    None => {
                        for pages in array_to_columns(array, fields[i].clone(), options, &encodings[i])? {
                            out.push(
                                pages
                                    .map(|p| compress(&mut zstd, p.map_err(crate::error::Error::from)?))
                                    .collect::<Result<_>>()?,
                            );
                        }
                    }
                }
            }
            Ok(out)
        };
        let (n, half) = (batch.columns().len(), batch.columns().len() / 2);
        let (a, b) = std::thread::scope(|scope| {
            let a = scope.spawn(|| encode(0..half));
            let b = encode(half..n);
            (a.join().unwrap_or_else(|e| std::panic::resume_unwind(e)), b)
        });
        let mut pages = a?;
        pages.extend(b?);
        groups.push((rows, pages));
    }
    Ok(groups)
}

/// `page` compressed as polars-parquet's `Compressor` does with zstd (format v1 data pages and dictionary pages
/// whole, v2 data pages after their levels), into an output buffer that is not zero-filled first.
fn compress(zstd: &mut zstd::bulk::Compressor<'_>, page: Page) -> Result<CompressedPage> {
    // A fresh buffer of the bound's capacity: zstd writes a `Vec` from its start, whatever its length.
    let mut squeeze = |input: &[u8]| -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(input.len()));
        zstd.compress_to_buffer(input, &mut out).map_err(|e| zstd_error(&e))?;
        Ok(out)
    };
    Ok(match page {
        Page::Data(mut data) => {
            let input = std::mem::take(data.buffer_mut());
            let out = match data.header() {
                DataPageHeader::V1(_) => squeeze(&input)?,
                DataPageHeader::V2(h) => {
                    let levels = (h.repetition_levels_byte_length + h.definition_levels_byte_length) as usize;
                    let mut out = input[..levels].to_vec();
                    out.extend_from_slice(&squeeze(&input[levels..])?);
                    out
                }
            };
            let rows = data.num_rows.unwrap_or_else(|| data.num_values());
            CompressedPage::Data(CompressedDataPage::new(
                data.header().clone(),
                CowBuffer::Owned(out),
                Compression::Zstd,
                input.len(),
                data.descriptor,
                rows,
            ))
        }
        Page::Dict(dict) => {
            let out = squeeze(&dict.buffer)?;
            CompressedPage::Dict(CompressedDictPage::new(
                CowBuffer::Owned(out),
                Compression::Zstd,
                dict.buffer.len(),
                dict.num_values,
                dict.is_sorted,
            ))
        }
    })
}

fn zstd_error(e: &std::io::Error) -> crate::error::Error {
    PolarsError::ComputeError(format!("zstd: {e}").into()).into()
}

/// Rows of a data page of a flat column (its values, nulls included).
fn page_rows(page: &Page) -> usize {
    match page {
        Page::Data(p) => p.num_values(),
        Page::Dict(_) => 0,
    }
}

/// `page` (of the f64 values `slice`) with the min/max statistics polars would have written under `stats`:
/// `PrimitiveStatistics` with the min and max of the valid values (NaN when any is NaN; then polars' own kernel
/// decides which NaN), −0.0/+0.0 for a zero min/max as the Parquet spec asks, none when every value is null.
fn with_min_max(page: Page, slice: &PrimitiveArray<f64>, stats: StatisticsOptions) -> Page {
    let Page::Data(mut data) = page else { return page };
    let range = match min_max(slice) {
        MinMax::Values(lo, hi) => Some((lo, hi)),
        MinMax::AllNull => None,
        MinMax::HasNan => polars::polars_compute::min_max::dyn_array_min_max_propagate_nan(slice).map(|(lo, hi)| {
            let value = |s: Box<dyn polars_arrow::scalar::Scalar>| {
                s.as_any().downcast_ref::<polars_arrow::scalar::PrimitiveScalar<f64>>().and_then(|s| *s.value())
            };
            (value(lo).unwrap_or(f64::NAN), value(hi).unwrap_or(f64::NAN))
        }),
    };
    let statistics = PrimitiveStatistics::<f64> {
        primitive_type: data.descriptor.primitive_type.clone(),
        null_count: stats.null_count.then_some(slice.null_count() as i64),
        distinct_count: None,
        min_value: range.filter(|_| stats.min_value).map(|(lo, _)| if lo == 0.0 { -0.0 } else { lo }),
        max_value: range.filter(|_| stats.max_value).map(|(_, hi)| if hi == 0.0 { 0.0 } else { hi }),
    }
    .serialize();
    let mut header = data.header().clone();
    match &mut header {
        DataPageHeader::V1(h) => h.statistics = Some(statistics),
        DataPageHeader::V2(h) => h.statistics = Some(statistics),
    }
    let buffer = std::mem::take(data.buffer_mut());
    let rows = data.num_rows.unwrap_or(slice.len());
    Page::Data(polars_parquet::parquet::page::DataPage::new(header, CowBuffer::Owned(buffer), data.descriptor, rows))
}

/// What [`min_max`] found.
#[derive(Debug, Clone, Copy, PartialEq)]
enum MinMax {
    /// The smallest and largest valid value.
    Values(f64, f64),
    /// No valid value.
    AllNull,
    /// A valid value is NaN.
    HasNan,
}

/// Lanes of [`min_max`]'s accumulators: independent chains the compiler turns into vector min/max.
const LANES: usize = 8;

/// The min and max of the valid values of `a`, eight lanes at a time: blocks of 64 rows whose validity word is all
/// ones (most of a feature column) run without masks, all-null blocks are skipped.
fn min_max(a: &PrimitiveArray<f64>) -> MinMax {
    let values = a.values().as_slice();
    let mut acc = Lanes::new();
    match a.validity().filter(|v| v.unset_bits() > 0) {
        None => acc.all(values),
        Some(valid) => {
            // One validity word per full block of 64 rows (`len / 64` of them), then the last `len % 64` bits.
            let mut words = valid.chunks::<u64>();
            let mut blocks = values.chunks_exact(64);
            for (block, word) in (&mut blocks).zip(&mut words) {
                match word {
                    u64::MAX => acc.all(block),
                    0 => {}
                    w => acc.masked(block, w),
                }
            }
            acc.masked(blocks.remainder(), words.remainder());
        }
    }
    acc.finish()
}

/// Per-lane running min, max and NaN flag.
struct Lanes {
    lo: [f64; LANES],
    hi: [f64; LANES],
    nan: [bool; LANES],
}

impl Lanes {
    fn new() -> Self {
        Self { lo: [f64::INFINITY; LANES], hi: [f64::NEG_INFINITY; LANES], nan: [false; LANES] }
    }

    /// Every value of `xs` is valid.
    fn all(&mut self, xs: &[f64]) {
        let mut chunks = xs.chunks_exact(LANES);
        for c in &mut chunks {
            for (j, &x) in c.iter().enumerate() {
                self.lo[j] = self.lo[j].min(x);
                self.hi[j] = self.hi[j].max(x);
                self.nan[j] |= x.is_nan();
            }
        }
        self.masked(chunks.remainder(), u64::MAX);
    }

    /// The values of `xs` (at most 64) whose bit in `word` is set.
    fn masked(&mut self, xs: &[f64], word: u64) {
        for (i, &x) in xs.iter().enumerate() {
            let valid = word >> i & 1 == 1;
            let j = i % LANES;
            self.lo[j] = self.lo[j].min(if valid { x } else { f64::INFINITY });
            self.hi[j] = self.hi[j].max(if valid { x } else { f64::NEG_INFINITY });
            self.nan[j] |= valid && x.is_nan();
        }
    }

    fn finish(&self) -> MinMax {
        if self.nan.iter().any(|&n| n) {
            return MinMax::HasNan;
        }
        let lo = self.lo.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = self.hi.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        // Only ±inf from the seeds are left when nothing was valid (a valid ±inf both seeds and bounds itself).
        if lo > hi { MinMax::AllNull } else { MinMax::Values(lo, hi) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use polars_arrow::bitmap::Bitmap;
    use proptest::prelude::*;

    /// The reference: polars-compute's own kernel, as polars-parquet calls it.
    fn reference(a: &PrimitiveArray<f64>) -> Option<(f64, f64)> {
        polars::polars_compute::min_max::dyn_array_min_max_propagate_nan(a).map(|(lo, hi)| {
            let v = |s: Box<dyn polars_arrow::scalar::Scalar>| {
                s.as_any().downcast_ref::<polars_arrow::scalar::PrimitiveScalar<f64>>().unwrap().value().unwrap()
            };
            (v(lo), v(hi))
        })
    }

    fn value() -> impl Strategy<Value = f64> {
        prop_oneof![
            8 => -1e6..1e6f64,
            1 => Just(0.0),
            1 => Just(-0.0),
            1 => Just(f64::INFINITY),
            1 => Just(f64::NEG_INFINITY),
        ]
    }

    proptest! {
        /// Any lengths, null patterns, bit offsets (slices) and infinities: the same min and max as polars.
        #[test]
        fn min_max_agrees_with_polars(
            cells in prop::collection::vec((value(), prop::bool::weighted(0.8)), 0..400),
            offset in 0usize..70,
        ) {
            let values: Vec<f64> = cells.iter().map(|c| c.0).collect();
            let valid: Bitmap = cells.iter().map(|c| c.1).collect();
            let array = PrimitiveArray::<f64>::new(ArrowDataType::Float64, values.into(), Some(valid));
            let offset = offset.min(array.len());
            let array = array.sliced(offset, cells.len() - offset);
            match (min_max(&array), reference(&array)) {
                (MinMax::Values(lo, hi), Some((rlo, rhi))) => {
                    // Bit for bit, up to the sign of a zero (the statistics write −0.0 / +0.0 either way).
                    let bits = |x: f64| if x == 0.0 { 0 } else { x.to_bits() };
                    prop_assert_eq!((bits(lo), bits(hi)), (bits(rlo), bits(rhi)));
                }
                (MinMax::AllNull, None) => {}
                (ours, theirs) => prop_assert!(false, "ours {:?}, polars {:?}", ours, theirs),
            }
        }
    }

    /// Compressed data pages decompress to the encoded ones: format v1 and v2 (v2 keeps its levels uncompressed
    /// in front), PLAIN and dictionary-encoded.
    #[test]
    fn compressed_pages_decompress_to_the_encoded_pages() {
        use polars_parquet::parquet::page::CompressedPage as C;
        let values: Vec<f64> = (0..5000).map(|i| f64::from(i % 37) * 0.5).collect();
        let valid: Bitmap = (0..5000).map(|i| i % 11 != 0).collect();
        let array = PrimitiveArray::<f64>::new(ArrowDataType::Float64, values.into(), Some(valid));
        let field = polars_arrow::datatypes::Field::new("x".into(), ArrowDataType::Float64, true);
        let type_ = polars_parquet::write::to_parquet_type(&field).unwrap();
        let mut zstd = zstd::bulk::Compressor::new(0).unwrap();
        for (version, encoding) in
            [(Version::V1, Encoding::Plain), (Version::V2, Encoding::Plain), (Version::V1, Encoding::RleDictionary)]
        {
            let options = WriteOptions {
                statistics: StatisticsOptions::default(),
                compression: ParquetCompression::Zstd(None).into(),
                version,
                data_page_size: None,
            };
            let mut pages = 0;
            for column in array_to_columns(array.clone().boxed(), type_.clone(), options, &[encoding]).unwrap() {
                for page in column {
                    let page = page.unwrap();
                    let (raw, levels): (Vec<u8>, usize) = match &page {
                        Page::Data(d) => (
                            d.buffer().to_vec(),
                            match d.header() {
                                DataPageHeader::V1(_) => 0,
                                DataPageHeader::V2(h) => {
                                    (h.repetition_levels_byte_length + h.definition_levels_byte_length) as usize
                                }
                            },
                        ),
                        Page::Dict(d) => (d.buffer.to_vec(), 0),
                    };
                    // A compressed dictionary page's bytes are not public: its data pages are checked instead.
                    let compressed = match compress(&mut zstd, page).unwrap() {
                        C::Data(mut d) => d.slice_mut().to_vec(),
                        C::Dict(_) => continue,
                    };
                    assert_eq!(compressed[..levels], raw[..levels], "{version:?} levels");
                    let body = zstd::bulk::decompress(&compressed[levels..], raw.len()).unwrap();
                    assert_eq!(body, raw[levels..], "{version:?} {encoding:?}");
                    pages += 1;
                }
            }
            assert!(pages >= 1, "{version:?} {encoding:?}: no page");
        }
    }

    #[test]
    fn a_nan_among_the_valid_values_is_reported_and_a_nan_under_a_null_is_not() {
        let values = vec![1.0, f64::NAN, 3.0, -2.0];
        let with_nan = PrimitiveArray::<f64>::new(ArrowDataType::Float64, values.clone().into(), None);
        assert_eq!(min_max(&with_nan), MinMax::HasNan);
        let masked: Bitmap = [true, false, true, true].into_iter().collect();
        let masked = PrimitiveArray::<f64>::new(ArrowDataType::Float64, values.into(), Some(masked));
        assert_eq!(min_max(&masked), MinMax::Values(-2.0, 3.0));
    }
}
