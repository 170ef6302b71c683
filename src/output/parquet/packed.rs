//! An integer column chunk written by hand in `DELTA_BINARY_PACKED`: the outputs' amounts,
//! times, counts and days (decimals of up to 18 digits, timestamps, `Int16/32/64`, dates).
//!
//! The Arrow writer takes such a column through its generic value path (a mini-batch at a
//! time, levels built and statistics gathered per page); here a row group's values are
//! widened straight from the Arrow buffer and delta-packed a block at a time: blocks of 128
//! deltas in 4 miniblocks of 32, each miniblock bit-packed to the width of its largest delta
//! above the block's smallest. Pages are cut every `page_rows` rows from the row group's
//! start, so that the bytes depend only on the rows. The chunk's statistics (minimum, maximum,
//! null count) are the Arrow writer's, when the file asks for them.

use arrow::array::Array;
use arrow::datatypes::{DataType, TimeUnit};
use bytes::Bytes;
use parquet::basic::{Encoding, Type as PhysicalType};
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::{ParquetError, Result};
use parquet::file::statistics::{Statistics, ValueStatistics};

use super::pages::{put_varint, take_rows, ChunkPages, ChunkSummary, HandChunk, Paged};

/// Values per block and per miniblock of `DELTA_BINARY_PACKED`.
const BLOCK: usize = 128;
const MINIBLOCK: usize = 32;

/// Whether arrays of `data_type` can be written by a [`PackedChunk`]: types whose Parquet
/// values are their Arrow values as they are (no unit conversion, signed order).
pub fn is_packable(data_type: &DataType) -> bool {
    use DataType::*;
    match data_type {
        Int16 | Int32 | Int64 | Date32 => true,
        Timestamp(TimeUnit::Millisecond | TimeUnit::Microsecond | TimeUnit::Nanosecond, _) => true,
        Decimal128(precision, _) => *precision <= 18,
        _ => false,
    }
}

/// One integer column of one row group, being written.
pub struct PackedChunk {
    pages: ChunkPages,
    /// INT32 in the file (deltas wrap at 32 bits), else INT64.
    int32: bool,
    statistics: bool,
    /// The filling page's non-null values, widened.
    values: Vec<i64>,
    /// The chunk's smallest and largest value so far.
    range: Option<(i64, i64)>,
}

impl PackedChunk {
    /// With the chunk's statistics when `statistics`.
    pub fn new(pages: ChunkPages, statistics: bool) -> Result<PackedChunk> {
        let descr = pages.descr();
        let int32 = match descr.physical_type() {
            PhysicalType::INT32 => true,
            PhysicalType::INT64 => false,
            other => {
                return Err(ParquetError::General(format!(
                    "column {} is {other}, not an integer",
                    descr.path()
                )))
            }
        };
        Ok(PackedChunk {
            pages,
            int32,
            statistics,
            values: Vec::new(),
            range: None,
        })
    }
}

impl HandChunk for PackedChunk {
    fn write(&mut self, array: &dyn Array) -> Result<()> {
        self.pages.admit(array)?;
        let data = array.to_data();
        match array.data_type() {
            DataType::Int16 => self.take(data.buffer::<i16>(0), array, i64::from),
            DataType::Int32 | DataType::Date32 => {
                self.take(data.buffer::<i32>(0), array, i64::from)
            }
            DataType::Int64 | DataType::Timestamp(..) => {
                self.take(data.buffer::<i64>(0), array, |v| v)
            }
            DataType::Decimal128(precision, _) if *precision <= 18 => {
                self.take(data.buffer::<i128>(0), array, |v| v as i64)
            }
            other => Err(ParquetError::General(format!(
                "column {} is written as integers, but a batch has {other}",
                self.pages.descr().path()
            ))),
        }
    }

    fn close(mut self: Box<Self>) -> Result<(Bytes, ColumnCloseResult)> {
        self.finish_page()?;
        let statistics = self.statistics.then(|| {
            let nulls = Some(self.pages.nulls());
            let (min, max) = (self.range.map(|r| r.0), self.range.map(|r| r.1));
            // Signed integers: the deprecated min/max fields mean the same, so both are set.
            match self.int32 {
                true => Statistics::from(
                    ValueStatistics::new(
                        min.map(|v| v as i32),
                        max.map(|v| v as i32),
                        None,
                        nulls,
                        false,
                    )
                    .with_backwards_compatible_min_max(true),
                ),
                false => Statistics::from(
                    ValueStatistics::new(min, max, None, nulls, false)
                        .with_backwards_compatible_min_max(true),
                ),
            }
        });
        let summary = ChunkSummary {
            dictionary: None,
            encodings: vec![Encoding::RLE, Encoding::DELTA_BINARY_PACKED],
            statistics,
        };
        self.pages.close(Encoding::DELTA_BINARY_PACKED, summary)
    }
}

impl PackedChunk {
    /// Takes `values` (of `array`, whose nulls say which are rows' values).
    fn take<T: Copy>(
        &mut self,
        values: &[T],
        array: &dyn Array,
        widen: impl Fn(T) -> i64,
    ) -> Result<()> {
        let nulls = array.nulls().filter(|n| n.null_count() > 0);
        take_rows(self, values.len(), nulls, |chunk, rows| match nulls {
            None => chunk.values.extend(values[rows].iter().map(|&v| widen(v))),
            Some(nulls) => chunk.values.extend(
                rows.filter(|&i| nulls.is_valid(i))
                    .map(|i| widen(values[i])),
            ),
        })
    }
}

impl Paged for PackedChunk {
    fn pages(&mut self) -> &mut ChunkPages {
        &mut self.pages
    }

    /// Ends the filling page: its values delta-packed.
    fn finish_page(&mut self) -> Result<()> {
        if self.statistics && !self.values.is_empty() {
            // One pass of plain comparisons, which the compiler turns into vector min/max:
            // `Iterator::min` and `max` were two passes through a comparison function.
            let (min, max) = self
                .values
                .iter()
                .fold((i64::MAX, i64::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
            self.range = Some(match self.range {
                Some((lo, hi)) => (lo.min(min), hi.max(max)),
                None => (min, max),
            });
        }
        let (values, int32) = (&self.values, self.int32);
        self.pages.finish_page(|page| match int32 {
            true => delta_binary_packed::<true>(values, page),
            false => delta_binary_packed::<false>(values, page),
        })?;
        self.values.clear();
        Ok(())
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Appends `values` in `DELTA_BINARY_PACKED`: the header (block size, miniblocks per block,
/// value count, first value), then per block of deltas its smallest delta, the bit width of
/// each miniblock and the miniblocks, each delta less the smallest. With `INT32` the deltas
/// wrap at 32 bits, as a reader of an INT32 column adds them.
pub(super) fn delta_binary_packed<const INT32: bool>(values: &[i64], out: &mut Vec<u8>) {
    put_varint(out, BLOCK as u64);
    put_varint(out, (BLOCK / MINIBLOCK) as u64);
    put_varint(out, values.len() as u64);
    put_varint(out, zigzag(values.first().copied().unwrap_or(0)));
    let Some(&first) = values.first() else {
        return;
    };
    let mut deltas = [0i64; BLOCK];
    let mut packed = [0u64; BLOCK];
    let mut previous = first;
    for block in values[1..].chunks(BLOCK) {
        let n = block.len();
        for (delta, &v) in deltas.iter_mut().zip(block) {
            *delta = match INT32 {
                true => i64::from((v as i32).wrapping_sub(previous as i32)),
                false => v.wrapping_sub(previous),
            };
            previous = v;
        }
        let min = deltas[..n].iter().fold(i64::MAX, |lo, &d| lo.min(d));
        put_varint(out, zigzag(min));
        for (p, &d) in packed.iter_mut().zip(&deltas[..n]) {
            *p = match INT32 {
                true => u64::from((d as i32).wrapping_sub(min as i32) as u32),
                false => d.wrapping_sub(min) as u64,
            };
        }
        // The last miniblock is padded with zeros to its full length.
        let miniblocks = n.div_ceil(MINIBLOCK);
        packed[n..miniblocks * MINIBLOCK].fill(0);
        let mut widths = [0u8; BLOCK / MINIBLOCK];
        for (m, width) in widths.iter_mut().enumerate().take(miniblocks) {
            let any = packed[m * MINIBLOCK..(m + 1) * MINIBLOCK]
                .iter()
                .fold(0, |a, &b| a | b);
            *width = (64 - any.leading_zeros()) as u8;
        }
        // Widths of the miniblocks a short last block does not need are written (as zero);
        // their bodies are not.
        out.extend_from_slice(&widths);
        for (m, &width) in widths.iter().enumerate().take(miniblocks) {
            pack_miniblock(&packed[m * MINIBLOCK..(m + 1) * MINIBLOCK], width, out);
        }
    }
}

/// Packs 32 values `width` bits each, least significant first: `4 × width` bytes.
fn pack_miniblock(values: &[u64], width: u8, out: &mut Vec<u8>) {
    let width = u32::from(width);
    if width == 0 {
        return;
    }
    let mut bytes = [0u8; 4 * 64];
    let mut at = 0;
    if width <= 32 {
        // Whole 32-bit words leave the accumulator as they fill, so it never holds more than
        // 31 + 32 bits.
        let mut acc = 0u64;
        let mut bits = 0u32;
        for &v in values {
            acc |= v << bits;
            bits += width;
            if bits >= 32 {
                bytes[at..at + 4].copy_from_slice(&(acc as u32).to_le_bytes());
                at += 4;
                acc >>= 32;
                bits -= 32;
            }
        }
    } else {
        let mut acc = 0u128;
        let mut bits = 0u32;
        for &v in values {
            acc |= u128::from(v) << bits;
            bits += width;
            if bits >= 64 {
                bytes[at..at + 8].copy_from_slice(&(acc as u64).to_le_bytes());
                at += 8;
                acc >>= 64;
                bits -= 64;
            }
        }
        // 32 × width bits end on a whole 4 bytes: 32 bits are left over or none.
        if bits > 0 {
            bytes[at..at + 4].copy_from_slice(&(acc as u32).to_le_bytes());
            at += 4;
        }
    }
    out.extend_from_slice(&bytes[..at]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zigzag_maps_small_magnitudes_to_small_numbers() {
        assert_eq!(zigzag(0), 0);
        assert_eq!(zigzag(-1), 1);
        assert_eq!(zigzag(1), 2);
        assert_eq!(zigzag(-2), 3);
        assert_eq!(zigzag(i64::MIN), u64::MAX);
    }

    #[test]
    fn a_short_run_is_one_block_of_one_miniblock() {
        // 5, 7, 6, 9: deltas 2, -1, 3; smallest -1; packed 3, 0, 4 in 3 bits.
        let mut out = Vec::new();
        delta_binary_packed::<false>(&[5, 7, 6, 9], &mut out);
        let mut expected = vec![128, 1, 4, 4, 10];
        // The smallest delta, zigzag(-1), then the four miniblocks' widths.
        expected.extend([1]);
        expected.extend([3, 0, 0, 0]);
        // 3 | 0 << 3 | 4 << 6 = 0x103, then 29 zero values: 12 bytes in all.
        let mut body = vec![0u8; 12];
        body[0] = 0x03;
        body[1] = 0x01;
        expected.extend(body);
        assert_eq!(out, expected);
    }

    #[test]
    fn pack_miniblock_writes_four_bytes_per_bit_of_width() {
        for width in [1u8, 3, 7, 8, 13, 32, 33, 63, 64] {
            let values: Vec<u64> = (0..32u64)
                .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - u32::from(width)))
                .collect();
            let mut out = Vec::new();
            pack_miniblock(&values, width, &mut out);
            assert_eq!(out.len(), 4 * width as usize, "width {width}");
            // Read back least significant bit first.
            for (i, &v) in values.iter().enumerate() {
                let mut got = 0u64;
                for b in 0..u64::from(width) {
                    let bit = i as u64 * u64::from(width) + b;
                    got |= u64::from(out[(bit / 8) as usize] >> (bit % 8) & 1) << b;
                }
                assert_eq!(got, v, "width {width}, value {i}");
            }
        }
    }
}
