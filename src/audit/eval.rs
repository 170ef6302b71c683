//! `yibao audit-eval`: how well the rules find what `yibao generate` planted. Reads the
//! generator's `labels.parquet` (claim_id, rule) and a run's `anomalies.parquet`, and scores
//! each rule: precision (flags that were planted) and recall (plants that were flagged).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use arrow::array::AsArray;

use crate::domain::Rule;
use crate::error::{Error, Result};
use crate::ingest::read::{col, read_file, ColumnKind::Text, ColumnSpec};

const PAIRS: &[ColumnSpec] = &[col("claim_id", Text, false), col("rule", Text, false)];

/// One rule's score.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RuleScore {
    pub rule: &'static str,
    /// Claims labelled with the rule.
    pub planted: u64,
    /// Claims flagged with the rule.
    pub flagged: u64,
    /// Flagged and labelled.
    pub found: u64,
    /// `found / flagged`; 1 when nothing was flagged.
    pub precision: f64,
    /// `found / planted`; 1 when nothing was planted.
    pub recall: f64,
}

/// (claim_id, rule) pairs of a file; an unknown rule code stops with file and row named.
fn pairs(path: &Path) -> Result<BTreeSet<(String, Rule)>> {
    let file = read_file(path, PAIRS)?;
    let mut out = BTreeSet::new();
    let mut row = 0u64;
    for batch in &file.batches {
        let (ids, rules) = (
            batch.column(0).as_string::<i32>(),
            batch.column(1).as_string::<i32>(),
        );
        for i in 0..batch.num_rows() {
            let rule = Rule::parse(rules.value(i)).ok_or_else(|| {
                Error::value(
                    path,
                    "rule",
                    row,
                    format!("`{}` is not an audit rule code", rules.value(i)),
                )
            })?;
            out.insert((ids.value(i).to_string(), rule));
            row += 1;
        }
    }
    Ok(out)
}

/// Scores every rule, in code order.
pub fn evaluate(labels: &Path, anomalies: &Path) -> Result<Vec<RuleScore>> {
    let planted = pairs(labels)?;
    let flagged = pairs(anomalies)?;
    let mut counts: BTreeMap<Rule, (u64, u64, u64)> = BTreeMap::new();
    for (_, rule) in &planted {
        counts.entry(*rule).or_default().0 += 1;
    }
    for pair in &flagged {
        let c = counts.entry(pair.1).or_default();
        c.1 += 1;
        c.2 += planted.contains(pair) as u64;
    }
    let ratio = |a: u64, b: u64| if b == 0 { 1.0 } else { a as f64 / b as f64 };
    Ok(Rule::ALL
        .iter()
        .map(|r| {
            let (p, f, hit) = counts.get(r).copied().unwrap_or_default();
            RuleScore {
                rule: r.as_str(),
                planted: p,
                flagged: f,
                found: hit,
                precision: ratio(hit, f),
                recall: ratio(hit, p),
            }
        })
        .collect())
}

/// The scores as a table for the terminal.
pub fn report(scores: &[RuleScore]) -> String {
    let mut out = format!(
        "{:<30} {:>8} {:>8} {:>8} {:>9} {:>7}\n",
        "rule", "planted", "flagged", "found", "precision", "recall"
    );
    for s in scores {
        out.push_str(&format!(
            "{:<30} {:>8} {:>8} {:>8} {:>9.4} {:>7.4}\n",
            s.rule, s.planted, s.flagged, s.found, s.precision, s.recall
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{RecordBatch, StringArray};
    use std::sync::Arc;

    fn write(path: &Path, rows: &[(&str, &str)]) {
        let batch = RecordBatch::try_from_iter(vec![
            (
                "claim_id",
                Arc::new(rows.iter().map(|r| Some(r.0)).collect::<StringArray>()) as _,
            ),
            (
                "rule",
                Arc::new(rows.iter().map(|r| Some(r.1)).collect::<StringArray>()) as _,
            ),
        ])
        .unwrap();
        let file = std::fs::File::create(path).unwrap();
        let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    }

    #[test]
    fn scores_precision_and_recall_per_rule() {
        let dir = tempfile::tempdir().unwrap();
        let (labels, anomalies) = (dir.path().join("l.parquet"), dir.path().join("a.parquet"));
        write(
            &labels,
            &[
                ("C1", "early_refill"),
                ("C2", "early_refill"),
                ("C3", "visit_burst"),
            ],
        );
        // C2's refill missed, C4 flagged wrongly; C3 found under its own rule only.
        write(
            &anomalies,
            &[
                ("C1", "early_refill"),
                ("C4", "early_refill"),
                ("C3", "visit_burst"),
                ("C3", "amount_outlier"),
            ],
        );
        let scores = evaluate(&labels, &anomalies).unwrap();
        let of = |r: &str| scores.iter().find(|s| s.rule == r).unwrap().clone();
        let refill = of("early_refill");
        assert_eq!((refill.planted, refill.flagged, refill.found), (2, 2, 1));
        assert_eq!((refill.precision, refill.recall), (0.5, 0.5));
        assert_eq!(
            (of("visit_burst").precision, of("visit_burst").recall),
            (1.0, 1.0)
        );
        assert_eq!(of("amount_outlier").precision, 0.0);
        assert_eq!(of("high_cost").flagged, 0);
        assert!(report(&scores).contains("early_refill"));
        write(&labels, &[("C1", "no_such_rule")]);
        let e = evaluate(&labels, &anomalies).unwrap_err().to_string();
        assert!(e.contains("no_such_rule") && e.contains("rule"), "{e}");
    }
}
