//! Claims as converted, to and from Arrow record batches: the rows of a spill file. A spilled
//! run converts each claim once, while scattering ([`super::claims::ClaimWindows`]), and writes
//! it to its partition in this form — dense person ids, codes into the month's text
//! dictionaries, fen, the rejection found — with its source file and row; a partition read back
//! is copied into [`Claims`] column by column, with no parsing, validation or interning.

use std::sync::{Arc, OnceLock};

use rayon::prelude::*;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int32Array, Int64Array, RecordBatch, StringBuilder,
    UInt32Array, UInt64Array, UInt8Array,
};
use arrow::datatypes::{
    ArrowPrimitiveType, DataType, Field, Int32Type, Int64Type, Schema, SchemaRef, UInt32Type,
    UInt64Type, UInt8Type,
};

use super::claims::{ClaimBatch, Claims, SourceFile};
use crate::domain::{Level, Reason, Referral, VisitType};
use crate::error::{Error, Result};

/// An absent `Option` of a `u8` vocabulary ([`Level`], [`Referral`], [`Reason`]).
const NONE: u8 = u8::MAX;

/// The columns of a spill file, in this order.
const COLUMNS: &[(&str, DataType, bool)] = &[
    ("person", DataType::UInt32, false),
    ("region", DataType::UInt32, false),
    ("settled_at", DataType::Int64, false),
    ("settled_at_null", DataType::Boolean, false),
    ("service_day", DataType::Int32, false),
    ("service_date_null", DataType::Boolean, false),
    ("level", DataType::UInt8, false),
    ("level_text", DataType::UInt32, false),
    ("prescriber", DataType::UInt8, false),
    ("visit", DataType::UInt8, false),
    ("diagnosis", DataType::UInt32, false),
    ("institution", DataType::UInt32, false),
    ("drug", DataType::UInt32, false),
    ("days_supply", DataType::Int32, true),
    ("total_fen", DataType::Int64, false),
    ("in_scope_fen", DataType::Int64, false),
    ("is_reversal", DataType::Boolean, false),
    ("referral", DataType::UInt8, false),
    ("medical_community", DataType::UInt32, false),
    ("rejected", DataType::UInt8, false),
    ("reject_detail", DataType::Utf8, true),
    ("claim_id", DataType::Utf8, true),
    ("reverses_claim_id", DataType::Utf8, true),
    ("file", DataType::UInt32, false),
    ("file_row", DataType::UInt64, false),
];

/// The schema of a spill file.
pub fn schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            Arc::new(Schema::new(
                COLUMNS
                    .iter()
                    .map(|(name, kind, nullable)| Field::new(*name, kind.clone(), *nullable))
                    .collect::<Vec<_>>(),
            ))
        })
        .clone()
}

fn code<T: Copy>(value: Option<T>, as_u8: impl Fn(T) -> u8) -> u8 {
    value.map_or(NONE, as_u8)
}

/// Column `name` of a spill batch.
fn column<'b>(batch: &'b RecordBatch, name: &str) -> &'b ArrayRef {
    batch.column_by_name(name).expect("a spill file column")
}

/// Column `name` of every batch, in order, as a vector sized once.
fn collected<T>(
    batches: &[RecordBatch],
    name: &str,
    mut each: impl FnMut(&ArrayRef, &mut Vec<T>),
) -> Vec<T> {
    let mut out = Vec::with_capacity(batches.iter().map(RecordBatch::num_rows).sum());
    for b in batches {
        each(column(b, name), &mut out);
    }
    out
}

fn values<T: ArrowPrimitiveType>(batches: &[RecordBatch], name: &str) -> Vec<T::Native> {
    collected(batches, name, |a, out| {
        out.extend_from_slice(a.as_primitive::<T>().values())
    })
}

fn flags(batches: &[RecordBatch], name: &str) -> Vec<bool> {
    collected(batches, name, |a, out| {
        out.extend(a.as_boolean().values().iter())
    })
}

/// A `UInt8` column decoded by `f`.
fn vocabulary<T>(batches: &[RecordBatch], name: &str, f: impl Fn(u8) -> T) -> Vec<T> {
    collected(batches, name, |a, out| {
        out.extend(a.as_primitive::<UInt8Type>().values().iter().map(|&v| f(v)))
    })
}

fn decode<T: Copy>(code: u8, all: &[T]) -> Option<T> {
    (code != NONE).then(|| all[code as usize])
}

/// The rows of `claims` (a converted window) cut by `part_of_row` into `parts` batches of
/// [`schema`], each in window order (`None` for a part with no row). Each column is read once,
/// in order, and appended to its parts: a gather per part would sweep the whole window once
/// per part.
pub fn scatter(
    claims: &Claims,
    part_of_row: &[u32],
    parts: usize,
) -> Result<Vec<Option<RecordBatch>>> {
    let mut counts = vec![0usize; parts];
    for &p in part_of_row {
        counts[p as usize] += 1;
    }
    let at = claims.locate_rows(0..claims.len());
    let mut detail: Vec<Option<&str>> = vec![None; claims.len()];
    for (&row, text) in &claims.reject_detail {
        detail[row] = Some(text);
    }
    // Column `values` cut into its parts' arrays.
    macro_rules! parts {
        ($values:expr, $array:path) => {{
            let mut out: Vec<Vec<_>> = counts.iter().map(|&n| Vec::with_capacity(n)).collect();
            for (v, &p) in $values.zip(part_of_row) {
                out[p as usize].push(v);
            }
            out.into_iter()
                .map(|v| Arc::new($array(v)) as ArrayRef)
                .collect::<Vec<ArrayRef>>()
        }};
    }
    let c = claims;
    // One task per column, in [`COLUMNS`] order; each yields the column's array of every part.
    // Never a range of columns to a task: the text columns cost many times the others, and
    // ranges left one thread copying them while the other waited.
    let columns: Vec<Vec<ArrayRef>> = (0..COLUMNS.len())
        .into_par_iter()
        .with_max_len(1)
        .map(|column| match column {
            0 => parts!(c.person.iter().copied(), UInt32Array::from),
            1 => parts!(c.region.iter().copied(), UInt32Array::from),
            2 => parts!(c.settled_at.iter().copied(), Int64Array::from),
            3 => parts!(c.settled_at_null.iter().copied(), BooleanArray::from),
            4 => parts!(c.service_day.iter().copied(), Int32Array::from),
            5 => parts!(c.service_date_null.iter().copied(), BooleanArray::from),
            6 => parts!(c.level.iter().map(|&v| v as u8), UInt8Array::from),
            7 => parts!(c.level_text.iter().copied(), UInt32Array::from),
            8 => parts!(
                c.prescriber.iter().map(|&v| code(v, |l| l as u8)),
                UInt8Array::from
            ),
            9 => parts!(c.visit.iter().map(|&v| v as u8), UInt8Array::from),
            10 => parts!(c.diagnosis.iter().copied(), UInt32Array::from),
            11 => parts!(c.institution.iter().copied(), UInt32Array::from),
            12 => parts!(c.drug.iter().copied(), UInt32Array::from),
            13 => parts!(c.days_supply.iter().copied(), Int32Array::from),
            14 => parts!(c.total_fen.iter().copied(), Int64Array::from),
            15 => parts!(c.in_scope_fen.iter().copied(), Int64Array::from),
            16 => parts!(c.is_reversal.iter().copied(), BooleanArray::from),
            17 => parts!(
                c.referral.iter().map(|&v| code(v, |x| x as u8)),
                UInt8Array::from
            ),
            18 => parts!(c.medical_community.iter().copied(), UInt32Array::from),
            19 => parts!(
                c.rejected.iter().map(|&v| code(v, |x| x as u8)),
                UInt8Array::from
            ),
            20 => text_parts(&counts, part_of_row, detail.iter().copied()),
            21 => text_parts(&counts, part_of_row, at.iter().map(|&a| c.claim_id_at(a))),
            22 => text_parts(
                &counts,
                part_of_row,
                at.iter().map(|&a| c.reverses_claim_id_at(a)),
            ),
            23 => parts!(
                at.iter().map(|&a| c.source_at(a).0 as u32),
                UInt32Array::from
            ),
            _ => parts!(at.iter().map(|&a| c.source_at(a).1), UInt64Array::from),
        })
        .collect();
    let mut columns: Vec<std::vec::IntoIter<ArrayRef>> =
        columns.into_iter().map(Vec::into_iter).collect();
    (0..parts)
        .map(|p| {
            let arrays: Vec<ArrayRef> = columns
                .iter_mut()
                .map(|c| c.next().expect("a part"))
                .collect();
            if counts[p] == 0 {
                return Ok(None);
            }
            RecordBatch::try_new(schema(), arrays)
                .map(Some)
                .map_err(|e| Error::arrow("spill rows", e))
        })
        .collect()
}

/// A text column (`values`, in window order) cut into its parts' arrays: each value copied
/// once, straight into its part's array.
fn text_parts<'a>(
    counts: &[usize],
    part_of_row: &[u32],
    values: impl Iterator<Item = Option<&'a str>>,
) -> Vec<ArrayRef> {
    let mut parts: Vec<StringBuilder> = counts
        .iter()
        .map(|&n| StringBuilder::with_capacity(n, n * 16))
        .collect();
    for (v, &p) in values.zip(part_of_row) {
        parts[p as usize].append_option(v);
    }
    parts
        .into_iter()
        .map(|mut b| Arc::new(b.finish()) as ArrayRef)
        .collect()
}

/// The claims of `batches` (of [`schema`], in order) from the input files `sources`, with the
/// month's text dictionaries of `texts`.
pub fn claims(sources: Vec<SourceFile>, texts: &Claims, batches: &[RecordBatch]) -> Claims {
    let mut c = Claims {
        sources,
        regions: texts.regions.clone(),
        level_texts: texts.level_texts.clone(),
        diagnoses: texts.diagnoses.clone(),
        institutions: texts.institutions.clone(),
        drugs: texts.drugs.clone(),
        medical_communities: texts.medical_communities.clone(),
        ..Claims::default()
    };
    // A column per task: the copies are plain memory moves.
    let b = batches;
    rayon::scope(|s| {
        s.spawn(|_| c.person = values::<UInt32Type>(b, "person"));
        s.spawn(|_| c.region = values::<UInt32Type>(b, "region"));
        s.spawn(|_| c.settled_at = values::<Int64Type>(b, "settled_at"));
        s.spawn(|_| c.settled_at_null = flags(b, "settled_at_null"));
        s.spawn(|_| c.service_day = values::<Int32Type>(b, "service_day"));
        s.spawn(|_| c.service_date_null = flags(b, "service_date_null"));
        s.spawn(|_| c.level = vocabulary(b, "level", |v| Level::ALL[v as usize]));
        s.spawn(|_| c.level_text = values::<UInt32Type>(b, "level_text"));
        s.spawn(|_| c.prescriber = vocabulary(b, "prescriber", |v| decode(v, Level::ALL)));
        s.spawn(|_| c.visit = vocabulary(b, "visit", |v| VisitType::ALL[v as usize]));
        s.spawn(|_| c.diagnosis = values::<UInt32Type>(b, "diagnosis"));
        s.spawn(|_| c.institution = values::<UInt32Type>(b, "institution"));
        s.spawn(|_| c.drug = values::<UInt32Type>(b, "drug"));
        s.spawn(|_| {
            c.days_supply = collected(b, "days_supply", |a, out| {
                out.extend(a.as_primitive::<Int32Type>().iter())
            })
        });
        s.spawn(|_| c.total_fen = values::<Int64Type>(b, "total_fen"));
        s.spawn(|_| c.in_scope_fen = values::<Int64Type>(b, "in_scope_fen"));
        s.spawn(|_| c.is_reversal = flags(b, "is_reversal"));
        s.spawn(|_| c.referral = vocabulary(b, "referral", |v| decode(v, Referral::ALL)));
        s.spawn(|_| c.medical_community = values::<UInt32Type>(b, "medical_community"));
        s.spawn(|_| c.rejected = vocabulary(b, "rejected", |v| decode(v, Reason::ALL)));
    });
    let mut offset = 0;
    for b in batches {
        let detail = column(b, "reject_detail");
        let detail = detail.as_string::<i32>();
        for i in 0..b.num_rows() {
            if detail.is_valid(i) {
                c.reject_detail
                    .insert(offset + i, detail.value(i).to_string());
            }
        }
        c.batches.push(ClaimBatch {
            offset,
            file: 0,
            file_row: 0,
            file_rows: Some(column(b, "file_row").as_primitive::<UInt64Type>().clone()),
            files: Some(
                column(b, "file")
                    .as_primitive::<UInt32Type>()
                    .values()
                    .to_vec(),
            ),
            claim_id: column(b, "claim_id").as_string::<i32>().clone(),
            reverses_claim_id: column(b, "reverses_claim_id").as_string::<i32>().clone(),
        });
        offset += b.num_rows();
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::claims::{ClaimWindows, InputBatch, NO_PERSON};
    use crate::ingest::registry::PersonIndex;
    use arrow::array::{Date32Array, Decimal128Array, StringArray, TimestampMillisecondArray};

    fn text(values: &[Option<&str>]) -> ArrayRef {
        Arc::new(StringArray::from(values.to_vec()))
    }

    fn money(fen: &[Option<i128>]) -> ArrayRef {
        Arc::new(
            Decimal128Array::from(fen.to_vec())
                .with_precision_and_scale(18, 2)
                .unwrap(),
        )
    }

    #[test]
    fn scattered_rows_read_back_as_the_claims_they_were_converted_to() {
        // A pharmacy fill with its prescriber, a reversal, a row with an unknown level (rejected,
        // with its detail), a row with no person, and an upward referral stay of a person the
        // registry does not know.
        let input = RecordBatch::try_from_iter(vec![
            (
                "claim_id",
                text(&[Some("C1"), Some("C2"), Some("C3"), Some("C4"), Some("C5")]),
            ),
            (
                "person_id",
                text(&[Some("P1"), Some("P2"), Some("P1"), None, Some("P9")]),
            ),
            (
                "region",
                text(&[
                    Some("jiaxing"),
                    Some("ezhou"),
                    Some("jiaxing"),
                    Some("ezhou"),
                    Some("weihai"),
                ]),
            ),
            (
                "settled_at",
                Arc::new(TimestampMillisecondArray::from(vec![
                    Some(1_709_280_000_000),
                    Some(1_709_366_400_000),
                    Some(1_709_452_800_000),
                    Some(1_709_539_200_000),
                    Some(1_709_625_600_000),
                ])),
            ),
            (
                "service_date",
                Arc::new(Date32Array::from(vec![
                    Some(19_783),
                    None,
                    Some(19_785),
                    None,
                    Some(19_780),
                ])),
            ),
            (
                "institution_id",
                text(&[Some("H1"), Some("H2"), Some("H1"), Some("H3"), Some("H4")]),
            ),
            (
                "institution_level",
                text(&[
                    Some("pharmacy"),
                    Some("tertiary"),
                    Some("clinic"),
                    Some("primary"),
                    Some("secondary"),
                ]),
            ),
            (
                "prescriber_level",
                text(&[Some("secondary"), None, None, None, None]),
            ),
            (
                "visit_type",
                text(&[None, Some("outpatient"), None, None, Some("inpatient")]),
            ),
            (
                "diagnosis",
                text(&[
                    Some("E11.9"),
                    Some("I10"),
                    Some("E11.9"),
                    Some("J06"),
                    Some("I63"),
                ]),
            ),
            (
                "total_amount",
                money(&[
                    Some(12_345),
                    Some(-5_000),
                    Some(800),
                    Some(100),
                    Some(1_500_000),
                ]),
            ),
            (
                "in_scope_amount",
                money(&[
                    Some(12_000),
                    Some(-5_000),
                    Some(800),
                    Some(100),
                    Some(1_200_000),
                ]),
            ),
            (
                "drug_code",
                text(&[Some("D7"), None, Some("D7"), None, None]),
            ),
            (
                "days_supply",
                Arc::new(Int64Array::from(vec![Some(30), None, None, None, None])),
            ),
            (
                "reverses_claim_id",
                text(&[None, Some("C0"), None, None, None]),
            ),
            ("referral", text(&[None, None, None, None, Some("upward")])),
            (
                "medical_community_id",
                text(&[None, None, None, None, Some("M1")]),
            ),
        ])
        .unwrap();
        let mut persons = PersonIndex::with_capacity(3);
        persons.intern("P1");
        persons.intern("P2");
        let mut windows = ClaimWindows::default();
        let window = windows
            .convert(
                vec![InputBatch {
                    file: 1,
                    first_row: 100,
                    batch: input,
                }],
                &mut persons,
            )
            .unwrap();
        // Cut into two parts (and an empty third); the first read back in two pieces.
        let rows = [0u32, 2, 3, 4];
        let parts = scatter(window, &[0, 1, 0, 0, 0], 3).unwrap();
        let (first, second) = (parts[0].as_ref().unwrap(), parts[1].as_ref().unwrap());
        assert!(parts[2].is_none());
        assert_eq!((first.num_rows(), second.num_rows()), (4, 1));
        let back = claims(Vec::new(), window, &[first.slice(0, 1), first.slice(1, 3)]);
        let other = claims(Vec::new(), window, std::slice::from_ref(second));
        assert_eq!(other.claim_id(0), Some("C2"));
        assert_eq!(other.reverses_claim_id(0), Some("C0"));
        assert_eq!(other.total_fen, vec![-5_000]);

        assert_eq!(back.len(), 4);
        macro_rules! same {
            ($($column:ident),+) => {$(
                let expected: Vec<_> = rows.iter().map(|&r| window.$column[r as usize]).collect();
                assert_eq!(back.$column, expected, stringify!($column));
            )+};
        }
        crate::ingest::claims::row_columns!(same);
        for (k, &r) in rows.iter().enumerate() {
            let r = r as usize;
            assert_eq!(back.claim_id(k), window.claim_id(r));
            assert_eq!(back.reverses_claim_id(k), window.reverses_claim_id(r));
            assert_eq!(back.source_row(k), (1, 100 + r as u64));
            assert_eq!(back.region_text(k), window.region_text(r));
        }
        // The values themselves, as converted.
        assert_eq!(back.person, vec![0, 0, NO_PERSON, 2]);
        assert_eq!(back.total_fen, vec![12_345, 800, 100, 1_500_000]);
        assert_eq!(back.prescriber[0], Some(Level::Secondary));
        assert_eq!(back.days_supply[0], Some(30));
        assert_eq!(back.referral[3], Some(Referral::Upward));
        assert_eq!(back.visit[3], VisitType::Inpatient);
        assert_eq!(back.rejected[1], Some(Reason::UnknownLevel));
        assert_eq!(back.rejected[2], Some(Reason::NullKey));
        assert_eq!(back.rejected[0], None);
        assert_eq!(
            back.reject_detail.get(&1).map(String::as_str),
            Some("institution_level = \"clinic\"")
        );
        assert_eq!(back.drugs[back.drug[1] as usize], "D7");
    }
}
