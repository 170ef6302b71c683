//! Arrow schemas of the three generated files: CONTRACT.md's input tables, column for column.
//!
//! Nullability follows the contract, except that `claim_id` and `person_id` of claims are
//! declared nullable: the generator deliberately writes a few bad rows with those keys missing,
//! which the engine must reject rather than fail on.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// `Decimal128(18, 2)`: money in yuan, to the fen.
pub const MONEY: DataType = DataType::Decimal128(18, 2);

pub fn claims() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("claim_id", DataType::Utf8, true),
        Field::new("person_id", DataType::Utf8, true),
        Field::new("region", DataType::Utf8, false),
        Field::new(
            "settled_at",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
        Field::new("service_date", DataType::Date32, true),
        Field::new("institution_id", DataType::Utf8, false),
        Field::new("institution_level", DataType::Utf8, false),
        Field::new("prescriber_level", DataType::Utf8, true),
        Field::new("visit_type", DataType::Utf8, true),
        Field::new("diagnosis", DataType::Utf8, false),
        Field::new("total_amount", MONEY, false),
        Field::new("in_scope_amount", MONEY, false),
        Field::new("drug_code", DataType::Utf8, true),
        Field::new("days_supply", DataType::Int32, true),
        Field::new("reverses_claim_id", DataType::Utf8, true),
    ]))
}

pub fn persons() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("person_id", DataType::Utf8, false),
        Field::new("region", DataType::Utf8, false),
        Field::new("scheme", DataType::Utf8, false),
        Field::new("supplementary", DataType::Boolean, true),
        Field::new("contribution_tier", DataType::Int16, true),
        Field::new("assistance_category", DataType::Utf8, true),
        Field::new("family_doctor_signed", DataType::Boolean, true),
    ]))
}

pub fn registrations() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("person_id", DataType::Utf8, false),
        Field::new("condition", DataType::Utf8, false),
        Field::new("severity", DataType::Utf8, true),
        Field::new("primary", DataType::Boolean, true),
        Field::new("approved_on", DataType::Date32, false),
        Field::new("ended_on", DataType::Date32, true),
    ]))
}
