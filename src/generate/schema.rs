//! Arrow schemas of the three generated files: CONTRACT.md's input tables, taken from the column
//! lists ingest reads, so the generator and the engine cannot drift apart.
//!
//! Nullability follows the contract, except that `claim_id` and `person_id` of claims are
//! declared nullable: the generator deliberately writes a few bad rows with those keys missing,
//! which the engine must reject rather than fail on.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::ingest::claims::CLAIM_COLUMNS;
use crate::ingest::read::contract_schema;
use crate::ingest::registry::{PERSON_COLUMNS, REGISTRATION_COLUMNS};

pub fn claims() -> SchemaRef {
    let fields: Vec<Field> = contract_schema(CLAIM_COLUMNS)
        .fields()
        .iter()
        .map(|f| match f.name().as_str() {
            "claim_id" | "person_id" => f.as_ref().clone().with_nullable(true),
            _ => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new(fields))
}

pub fn persons() -> SchemaRef {
    Arc::new(contract_schema(PERSON_COLUMNS))
}

pub fn registrations() -> SchemaRef {
    Arc::new(contract_schema(REGISTRATION_COLUMNS))
}

/// `labels.parquet`: one row per planted claim and the audit rule it should fire.
pub fn labels() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("claim_id", DataType::Utf8, false),
        Field::new("rule", DataType::Utf8, false),
    ]))
}
