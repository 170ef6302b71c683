//! What differs between two policy directories, number by number, each with the clause that
//! stands behind it: what an analyst changed in a copy of `policies/`, as `yibao compare` shows
//! it. Files are compared as TOML (not as compiled tables), so a change reads as the analyst
//! wrote it: `weihai.toml`, version `weihai-2023-05`, benefit `general_outpatient (resident)`,
//! `ratio.primary`: `0.50` → `0.60`.

use std::path::Path;

use serde::Serialize;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::error::{Error, Result};

/// One number (or other value) that differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub file: String,
    /// The version, benefit or layer holding it, as the file names them
    /// (`weihai-2023-05 › general_outpatient (resident)`).
    pub place: String,
    /// The key within it (`ratio.primary`, `bands[1].ratio`).
    pub key: String,
    /// As written in each file; `None` where the file does not have it.
    pub baseline: Option<String>,
    pub proposal: Option<String>,
    /// The source clause: the comment on the value's line in the proposal (else the
    /// baseline), else the `assumed` note of its table, else the comment above its table.
    pub clause: String,
}

/// A scalar (or array of scalars) with where it sits.
struct Leaf {
    place: String,
    key: String,
    text: String,
    clause: String,
}

/// Every value of the `*.toml` files of both directories that differs, in file and key order.
/// A file in one directory only is one change of its whole text.
pub fn differences(baseline: &Path, proposal: &Path) -> Result<Vec<Change>> {
    let names = |dir: &Path| -> Result<Vec<String>> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map_err(|e| Error::io(dir, e))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".toml"))
            .collect();
        names.sort();
        Ok(names)
    };
    let (a, b) = (names(baseline)?, names(proposal)?);
    let mut all: Vec<&String> = a.iter().chain(&b).collect();
    all.sort();
    all.dedup();
    let mut changes = Vec::new();
    for name in all {
        let read = |dir: &Path| -> Result<Option<String>> {
            let path = dir.join(name);
            match path.exists() {
                true => std::fs::read_to_string(&path)
                    .map(Some)
                    .map_err(|e| Error::io(&path, e)),
                false => Ok(None),
            }
        };
        let (old, new) = (read(baseline)?, read(proposal)?);
        let (old, new) = match (old, new) {
            (Some(old), Some(new)) => (old, new),
            (old, new) => {
                changes.push(Change {
                    file: name.clone(),
                    place: String::new(),
                    key: "(the whole file)".into(),
                    baseline: old.map(|_| "present".into()),
                    proposal: new.map(|_| "present".into()),
                    clause: String::new(),
                });
                continue;
            }
        };
        if old == new {
            continue;
        }
        let leaves = |dir: &Path, text: &str| -> Result<Vec<Leaf>> {
            let table = DeTable::parse(text).map_err(|e| {
                Error::policy(dir.join(name), "*", format!("not TOML: {}", e.message()))
            })?;
            let mut out = Vec::new();
            walk_table(text, table.get_ref(), "", "", None, &mut out);
            Ok(out)
        };
        let (old, new) = (leaves(baseline, &old)?, leaves(proposal, &new)?);
        let index = |leaves: &[Leaf]| -> std::collections::BTreeMap<(String, String), usize> {
            leaves
                .iter()
                .enumerate()
                .map(|(i, l)| ((l.place.clone(), l.key.clone()), i))
                .collect()
        };
        let (old_at, new_at) = (index(&old), index(&new));
        let mut keys: Vec<&(String, String)> = old_at.keys().chain(new_at.keys()).collect();
        keys.sort();
        keys.dedup();
        for key in keys {
            let (was, is) = (
                old_at.get(key).map(|&i| &old[i]),
                new_at.get(key).map(|&i| &new[i]),
            );
            if was.map(|l| &l.text) == is.map(|l| &l.text) {
                continue;
            }
            let clause = [is, was]
                .into_iter()
                .flatten()
                .map(|l| l.clause.clone())
                .find(|c| !c.is_empty())
                .unwrap_or_default();
            changes.push(Change {
                file: name.clone(),
                place: key.0.clone(),
                key: key.1.clone(),
                baseline: was.map(|l| l.text.clone()),
                proposal: is.map(|l| l.text.clone()),
                clause,
            });
        }
    }
    Ok(changes)
}

/// How an element of an array of tables is named in a place: a version by its `id`, a benefit
/// by `name (coverage: conditions)`, a layer by its coverage or category; else by its position.
fn element_name(table: &DeTable, at: usize) -> String {
    let text = |k: &str| {
        table
            .get(k)
            .and_then(|v| v.get_ref().as_str().map(str::to_string))
    };
    let conditions: Vec<&str> = table
        .get("conditions")
        .and_then(|v| v.get_ref().as_array())
        .map(|a| a.iter().filter_map(|c| c.get_ref().as_str()).collect())
        .unwrap_or_default();
    let coverage = match (text("coverage"), conditions.is_empty()) {
        (Some(c), true) => Some(c),
        (Some(c), false) => Some(format!("{c}: {}", conditions.join(", "))),
        (None, false) => Some(conditions.join(", ")),
        (None, true) => None,
    };
    match (text("id"), text("name"), coverage, text("category")) {
        (Some(id), _, _, _) => id,
        (None, Some(name), Some(coverage), _) => format!("{name} ({coverage})"),
        (None, Some(name), None, _) => name,
        (None, None, Some(coverage), _) => coverage,
        (None, None, None, Some(category)) => category,
        _ => format!("#{}", at + 1),
    }
}

/// The names of the elements of an array of tables, made unique: a name two elements share
/// gets ` #n`, its place among them.
fn element_names(items: &[Spanned<DeValue>]) -> Vec<String> {
    let names: Vec<String> = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            item.get_ref()
                .as_table()
                .map_or(format!("#{}", i + 1), |t| element_name(t, i))
        })
        .collect();
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            if names.iter().filter(|n| *n == name).count() > 1 {
                let nth = names[..=i].iter().filter(|n| *n == name).count();
                format!("{name} #{nth}")
            } else {
                name.clone()
            }
        })
        .collect()
}

fn join(a: &str, sep: &str, b: &str) -> String {
    if a.is_empty() {
        b.to_string()
    } else {
        format!("{a}{sep}{b}")
    }
}

/// The `assumed` note table in force, and the key prefix of the table that holds it: its keys
/// are relative to that table.
#[derive(Clone)]
struct Notes<'t> {
    table: &'t DeTable<'t>,
    prefix: String,
}

/// Collects the leaves of `table`, which sits at `place`, under key prefix `prefix`; `notes` are
/// those of the table holding it (an inline table's keys are noted there).
fn walk_table<'t>(
    text: &str,
    table: &'t DeTable<'t>,
    place: &str,
    prefix: &str,
    notes: Option<Notes<'t>>,
    out: &mut Vec<Leaf>,
) {
    let notes = match table.get("assumed").and_then(|v| v.get_ref().as_table()) {
        Some(t) => Some(Notes {
            table: t,
            prefix: prefix.to_string(),
        }),
        None => notes,
    };
    for (key, value) in table.iter() {
        let key = key.get_ref().as_ref();
        if key == "assumed" {
            continue;
        }
        walk_value(
            text,
            value,
            place,
            &join(prefix, ".", key),
            notes.clone(),
            out,
        );
    }
}

fn walk_value<'t>(
    text: &str,
    value: &'t Spanned<DeValue<'t>>,
    place: &str,
    key: &str,
    notes: Option<Notes<'t>>,
    out: &mut Vec<Leaf>,
) {
    match value.get_ref() {
        DeValue::Table(t) => walk_table(text, t, place, key, notes, out),
        DeValue::Array(items)
            if items.iter().all(|v| v.get_ref().is_table()) && !items.is_empty() =>
        {
            let names = element_names(items);
            for (i, item) in items.iter().enumerate() {
                let t = item.get_ref().as_table().expect("every item is a table");
                // Arrays of tables written as `[[…]]` name places; inline ones (`bands`) are
                // keys of their place.
                if text[item.span()].trim_start().starts_with('{') {
                    walk_table(text, t, place, &format!("{key}[{i}]"), notes.clone(), out);
                } else {
                    let here = join(place, " › ", &names[i]);
                    walk_table(text, t, &here, "", None, out);
                }
            }
        }
        _ => out.push(Leaf {
            place: place.to_string(),
            key: key.to_string(),
            text: text[value.span()].trim().to_string(),
            clause: clause_of(text, value.span(), key, notes),
        }),
    }
}

/// The source of a value: the `assumed` note of its own key (a number the source does not
/// state has no clause); else the comment on the line where `span` ends; else the note of a
/// key it lies under; else the comment lines just above its table's header.
fn clause_of(text: &str, span: std::ops::Range<usize>, key: &str, notes: Option<Notes>) -> String {
    // The key relative to the table holding the notes, then the keys it lies under.
    let note = |exact: bool| -> Option<String> {
        let notes = notes.as_ref()?;
        let mut k = match notes.prefix.as_str() {
            "" => key,
            p => key.strip_prefix(p)?.strip_prefix('.')?,
        };
        loop {
            if let Some(why) = notes.table.get(k).and_then(|v| v.get_ref().as_str()) {
                return Some(format!("assumed: {why}"));
            }
            match k.rfind(['.', '[']) {
                Some(at) if !exact => k = &k[..at],
                _ => return None,
            }
        }
    };
    if let Some(why) = note(true) {
        return why;
    }
    let line_end = text[span.end..]
        .find('\n')
        .map_or(text.len(), |n| span.end + n);
    if let Some(hash) = text[span.end..line_end].find('#') {
        return text[span.end + hash + 1..line_end].trim().to_string();
    }
    if let Some(why) = note(false) {
        return why;
    }
    // Up from the value to its table's header, then the comments right above it.
    let mut lines = text[..span.start].lines().rev();
    for line in lines.by_ref() {
        if line.trim_start().starts_with('[') {
            break;
        }
    }
    let mut above: Vec<&str> = lines
        .take_while(|l| l.trim_start().starts_with('#'))
        .map(|l| l.trim_start_matches(['#', '-', ' ']).trim())
        .collect();
    above.reverse();
    above.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(name), text).unwrap();
    }

    const FILE: &str = r#"region = "371000"

[[versions]]
id = "v-2020"

# ---- General outpatient (普通门诊统筹)
[[versions.benefits]]
name = "general_outpatient"
coverage = "resident"
annual_cap = 500     # clause 3: 500 yuan a year
ratio = { primary = 0.50, secondary = 0.40 }
bands = [{ above = 0, ratio = 0.60 }, { above = 100000, ratio = 0.70 }]
deductible = 0
assumed = { ratio = "not stated; usual rates" }
"#;

    #[test]
    fn each_changed_number_is_named_by_its_place_with_its_clause() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        write(&a, "weihai.toml", FILE);
        let changed = FILE
            .replace("annual_cap = 500 ", "annual_cap = 800 ")
            .replace("primary = 0.50", "primary = 0.60")
            .replace("ratio = 0.70 }", "ratio = 0.75 }")
            .replace("deductible = 0", "deductible = 100");
        write(&b, "weihai.toml", &changed);
        write(&a, "same.toml", "x = 1");
        write(&b, "same.toml", "x = 1");
        let place = "v-2020 › general_outpatient (resident)";
        let change = |key: &str, was: &str, is: &str, clause: &str| Change {
            file: "weihai.toml".into(),
            place: place.into(),
            key: key.into(),
            baseline: Some(was.into()),
            proposal: Some(is.into()),
            clause: clause.into(),
        };
        assert_eq!(
            differences(&a, &b).unwrap(),
            vec![
                change("annual_cap", "500", "800", "clause 3: 500 yuan a year"),
                change(
                    "bands[1].ratio",
                    "0.70",
                    "0.75",
                    "General outpatient (普通门诊统筹)"
                ),
                change(
                    "deductible",
                    "0",
                    "100",
                    "General outpatient (普通门诊统筹)"
                ),
                change(
                    "ratio.primary",
                    "0.50",
                    "0.60",
                    "assumed: not stated; usual rates"
                ),
            ]
        );
    }

    const TWINS: &str = r#"region = "371000"

[[versions]]
id = "v"

[[versions.benefits]]
name = "two_diseases"
coverage = "resident"
conditions = ["hypertension"]
annual_cap = 300
ratio = { primary = 0.70, secondary = 0.50 }   # primary: clause 2
assumed = { "ratio.secondary" = "not stated" }

[[versions.benefits]]
name = "two_diseases"
coverage = "resident"
conditions = ["hypertension"]
annual_cap = 300

[versions.audit]
max_days_supply = 84
assumed = { max_days_supply = "the national limit" }
"#;

    #[test]
    fn benefits_sharing_a_name_are_told_apart_and_notes_are_found_where_they_sit() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        write(&a, "weihai.toml", TWINS);
        let changed = TWINS
            .replace("annual_cap = 300", "annual_cap = 400")
            .replace("secondary = 0.50", "secondary = 0.55")
            .replace("max_days_supply = 84", "max_days_supply = 90");
        write(&b, "weihai.toml", &changed);
        let found: Vec<(String, String, String)> = differences(&a, &b)
            .unwrap()
            .into_iter()
            .map(|c| (c.place, c.key, c.clause))
            .collect();
        let twin = |n: u32| format!("v › two_diseases (resident: hypertension) #{n}");
        assert_eq!(
            found,
            vec![
                (
                    "v".to_string(),
                    "audit.max_days_supply".into(),
                    "assumed: the national limit".into()
                ),
                (twin(1), "annual_cap".into(), String::new()),
                (
                    twin(1),
                    "ratio.secondary".into(),
                    "assumed: not stated".into()
                ),
                (twin(2), "annual_cap".into(), String::new()),
            ]
        );
    }
}
