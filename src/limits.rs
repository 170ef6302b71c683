//! The bounds yibao holds every input to (in the spirit of TigerBeetle's limits): each is far
//! beyond any real claim, registry or policy, so that a value past it is a data error, and close
//! enough that every sum the engine keeps provably fits its integer type. A claim past a bound is
//! rejected with its reason; a registry or state past one stops the run naming the file. The
//! README's "Limits" table lists them with what happens at each.
//!
//! Why the money cannot overflow: a claim's amounts are at most [`MAX_CLAIM_FEN`] (10⁹ fen) in
//! magnitude, and a year-to-date pool counts its claims in an `i32` that is checked on every
//! increment, so a pool's sums stay below 2³¹ × 10⁹ ≈ 2.1 × 10¹⁸ fen, inside `i64`
//! (9.2 × 10¹⁸). Products with ratios are taken in `i128` ([`crate::money`]).

use arrow::array::StringArray;

use crate::domain::{days_from_civil, Day, Millis, MILLIS_PER_DAY};

/// Largest `total_amount` or `in_scope_amount` of one claim, in fen: 10,000,000.00 yuan. The
/// costliest treatments (a CAR-T therapy, a months-long ICU stay) cost a few million yuan.
pub const MAX_CLAIM_FEN: i64 = 1_000_000_000;

/// Largest `days_supply` of one fill: a year of medication. The policies' own prescription
/// limits (Ezhou 168, Rizhao 84 days) are audit rules below it (`supply_too_long`).
pub const MAX_DAYS_SUPPLY: i32 = 366;

/// Longest id (claim, person, institution, drug, diagnosis, region, medical community), in
/// bytes. National medical-insurance codes are 20–40 characters.
pub const MAX_ID_BYTES: usize = 128;

/// First day a `settled_at` or `service_date` may fall on: 1990-01-01.
pub const FIRST_DAY: Day = days_from_civil(1990, 1, 1);
/// First day past the range: 2100-01-01.
pub const END_DAY: Day = days_from_civil(2100, 1, 1);

/// Most claims of one person in one run. A person id that collects more is a placeholder (a
/// default id for unidentified patients), not a person; its claims are rejected
/// (`person_claim_limit`) rather than settled against one person's cap. The audit rules are
/// O(k log k) in a person's claims, tested at 100,000.
pub const MAX_CLAIMS_PER_PERSON: usize = 1 << 20;

/// Most claim rows of one run: rows are numbered in 32 bits (the last number marks "none").
pub const MAX_RUN_ROWS: u64 = u32::MAX as u64 - 1;

/// Most registrations (chronic-condition recognitions) of one person in the registry: a
/// person's registrations are looked through for each of the person's claims.
pub const MAX_REGISTRATIONS_PER_PERSON: usize = 1024;

/// First day a registration's `approved_on` or `ended_on` may fall on: 1900-01-01. Wider than a
/// claim's: recognitions are carried over from older systems, and an open end is often written
/// 9999-12-31.
pub const FIRST_REGISTRY_DAY: Day = days_from_civil(1900, 1, 1);
/// First day past a registration's range: 10000-01-01.
pub const END_REGISTRY_DAY: Day = days_from_civil(10000, 1, 1);

/// Whether `day` (a registration's date) falls in `[FIRST_REGISTRY_DAY, END_REGISTRY_DAY)`, so
/// that day arithmetic on it (a benefit starting the day after approval) cannot overflow.
#[inline]
pub fn registry_day_in_range(day: Day) -> bool {
    (FIRST_REGISTRY_DAY..END_REGISTRY_DAY).contains(&day)
}

/// Whether `ts` (a `settled_at`) falls in `[FIRST_DAY, END_DAY)`.
#[inline]
pub fn time_in_range(ts: Millis) -> bool {
    (FIRST_DAY as i64 * MILLIS_PER_DAY..END_DAY as i64 * MILLIS_PER_DAY).contains(&ts)
}

/// Whether `day` (a `service_date`) falls in `[FIRST_DAY, END_DAY)`.
#[inline]
pub fn day_in_range(day: Day) -> bool {
    (FIRST_DAY..END_DAY).contains(&day)
}

/// What is wrong with an id, if anything: too long, or holding a control character (a line
/// break or NUL inside an id breaks every CSV and log a reader makes of it). The message names
/// the column, never the value, which may be a person's id.
pub fn id_problem(column: &str, id: &str) -> Option<String> {
    if id.len() > MAX_ID_BYTES {
        return Some(format!(
            "{column} is {} bytes long (limit {MAX_ID_BYTES})",
            id.len()
        ));
    }
    id.bytes()
        .position(is_control)
        .map(|at| format!("{column} holds a control character at byte {at}"))
}

/// Whether every value of `ids` is within the id bounds, checked on the array's value buffer at
/// once (one pass the compiler vectorises) so that a clean batch costs no per-row work.
pub fn ids_clean(ids: &StringArray) -> bool {
    let offsets = ids.value_offsets();
    let (first, last) = (offsets[0] as usize, offsets[offsets.len() - 1] as usize);
    let longest = offsets.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    // Null slots may still own bytes; a control byte there makes the rows be checked one by one.
    longest as usize <= MAX_ID_BYTES
        && !ids.values()[first..last]
            .iter()
            .fold(false, |any, &b| any | is_control(b))
}

#[inline]
fn is_control(b: u8) -> bool {
    b < 0x20 || b == 0x7f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_bounded_in_length_and_free_of_control_characters() {
        assert_eq!(id_problem("claim_id", "C-2024-000001"), None);
        assert_eq!(
            id_problem("claim_id", &"x".repeat(129)).unwrap(),
            "claim_id is 129 bytes long (limit 128)"
        );
        assert_eq!(id_problem("person_id", &"x".repeat(128)), None);
        assert_eq!(
            id_problem("drug_code", "A\nB").unwrap(),
            "drug_code holds a control character at byte 1"
        );
        assert!(id_problem("x", "tab\there").is_some());
        assert!(id_problem("x", "del\u{7f}").is_some());
        // Chinese text is not a control character.
        assert_eq!(id_problem("institution_id", "嘉兴市第一医院"), None);
    }

    #[test]
    fn a_batch_is_clean_only_when_every_value_is() {
        let clean = StringArray::from(vec![Some("a"), None, Some("bc")]);
        assert!(ids_clean(&clean));
        let long = "y".repeat(MAX_ID_BYTES + 1);
        assert!(!ids_clean(&StringArray::from(vec![
            Some("a"),
            Some(long.as_str())
        ])));
        assert!(!ids_clean(&StringArray::from(vec![Some("a\0b")])));
        // A slice of an array is judged on its own values.
        let mixed = StringArray::from(vec![Some("a\u{1}"), Some("b")]);
        assert!(ids_clean(&mixed.slice(1, 1)));
        assert!(ids_clean(&StringArray::from(Vec::<Option<&str>>::new())));
    }

    #[test]
    fn times_are_bounded_to_1990_through_2099() {
        assert_eq!(FIRST_DAY, 7305);
        assert!(day_in_range(FIRST_DAY) && !day_in_range(FIRST_DAY - 1));
        assert!(day_in_range(END_DAY - 1) && !day_in_range(END_DAY));
        let first_ms = FIRST_DAY as i64 * MILLIS_PER_DAY;
        assert!(time_in_range(first_ms) && !time_in_range(first_ms - 1));
        assert!(!time_in_range(0), "the Unix epoch, a zero left in a column");
        assert!(!time_in_range(END_DAY as i64 * MILLIS_PER_DAY));
    }
}
