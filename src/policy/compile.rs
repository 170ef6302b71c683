//! Validation and compilation of one policy file into [`Policies`]'s tables. Every refusal names
//! the file, the key (as a dotted path) and the reason.

use std::path::Path;

use super::raw::{self, BenefitStart, CapPer, DeductiblePer, Number, RatioEntry, Scope};
use super::{
    Assistance, Assumption, AuditRules, Benefit, CriticalIllness, LevelRatio, Policies,
    RegionPolicy, Slot, Version, DEFAULT_WEIGHTS_BP, NONE,
};
use crate::domain::{
    days_from_civil, AssistanceCategory, Coverage, Day, Level, Rule, Severity, VisitType,
};
use crate::error::{Error, Result};
use crate::money::{parse_scaled, RATIO_ONE};

/// Contribution tiers in the order of [`Version::tier_reduction_bp`].
pub const TIERS: [i16; 3] = [100, 80, 60];

/// The hash of what settles under version `vi` of a policy file's `tree`
/// ([`super::Version::text_hash`]): its table and the file's tables but the other versions,
/// `name`, `source` and `capitation` (a year-end account, not a settlement), serialised as JSON
/// with keys in order, so that a comment, a note, a blank line or a reordering leaves it
/// unchanged.
fn text_hash(tree: &toml::Table, vi: usize) -> String {
    let mut settles: std::collections::BTreeMap<&str, serde_json::Value> = tree
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "name" | "source" | "capitation" | "versions"))
        .map(|(k, v)| (k.as_str(), canonical(v)))
        .collect();
    if let Some(version) = tree
        .get("versions")
        .and_then(|v| v.as_array())
        .and_then(|v| v.get(vi))
    {
        settles.insert("version", canonical(version));
    }
    let text = serde_json::to_string(&settles).expect("a TOML tree serialises as JSON");
    blake3::hash(text.as_bytes()).to_hex().to_string()
}

/// A TOML value as JSON with every table's keys in order, and without its `assumed` notes
/// (they say why a number was chosen; they settle nothing).
fn canonical(value: &toml::Value) -> serde_json::Value {
    match value {
        toml::Value::Table(t) => serde_json::Value::Object(
            t.iter()
                .filter(|(k, _)| k.as_str() != "assumed")
                .map(|(k, v)| (k.clone(), canonical(v)))
                .collect::<std::collections::BTreeMap<_, _>>()
                .into_iter()
                .collect(),
        ),
        toml::Value::Array(a) => serde_json::Value::Array(a.iter().map(canonical).collect()),
        toml::Value::String(s) => serde_json::Value::String(s.clone()),
        // Numbers, booleans and dates as their TOML text: exact, whatever JSON would make of them.
        other => serde_json::Value::String(other.to_string()),
    }
}

/// Parses, validates and compiles one file's text, appending to `policies`.
pub fn compile_file(policies: &mut Policies, path: &Path, text: &str) -> Result<()> {
    let fail = |key: &str, reason: String| Error::policy(path, key, reason);
    let line = |e: &toml::de::Error| {
        e.span()
            .map(|s| format!("line {}", text[..s.start].lines().count().max(1)))
            .unwrap_or_else(|| "-".into())
    };
    let syntax =
        toml::Deserializer::parse(text).map_err(|e| fail(&line(&e), e.message().into()))?;
    // serde_path_to_error names the dotted key of a value of the wrong shape (a deductible that
    // is neither a number nor a table, a band without its ratio), with the line where it is.
    let file: raw::PolicyFile = serde_path_to_error::deserialize(syntax).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner();
        let key = if key == "." || key.is_empty() {
            line(&inner)
        } else {
            format!("{key} ({})", line(&inner))
        };
        fail(&key, inner.message().to_string())
    })?;
    // The untyped tree, to check that every `assumed` key names a key that is really there.
    let tree: toml::Table = toml::from_str(text).map_err(|e| fail("-", e.to_string()))?;

    if policies.region_by_code.contains_key(&file.region) {
        return Err(fail(
            "region",
            format!("region {} is already defined by another file", file.region),
        ));
    }
    if file.versions.is_empty() {
        return Err(fail(
            "versions",
            "a policy needs at least one version".into(),
        ));
    }
    let region = policies.regions.len() as u16;

    // Conditions and their ICD-10 prefixes; a prefix may diagnose only one condition.
    let mut icd_prefixes: Vec<(String, u16)> = Vec::new();
    for (name, condition) in &file.conditions {
        check_identifier(name).map_err(|r| fail(&format!("conditions.{name}"), r))?;
        if condition.icd10.is_empty() {
            return Err(fail(
                &format!("conditions.{name}.icd10"),
                "a condition needs at least one ICD-10 prefix".into(),
            ));
        }
        let id = policies.conditions.intern(name);
        for prefix in &condition.icd10 {
            let normalized = super::normalize_icd(prefix);
            if normalized.is_empty() || !normalized.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(fail(
                    &format!("conditions.{name}.icd10"),
                    format!("`{prefix}` is not an ICD-10 code prefix"),
                ));
            }
            if let Some((_, other)) = icd_prefixes.iter().find(|(p, _)| *p == normalized) {
                return Err(fail(
                    &format!("conditions.{name}.icd10"),
                    format!(
                        "prefix `{prefix}` already diagnoses `{}`",
                        policies.conditions[*other as usize]
                    ),
                ));
            }
            icd_prefixes.push((normalized, id));
        }
    }
    icd_prefixes.sort();

    let mut version_ids = Vec::new();
    for (vi, version) in file.versions.iter().enumerate() {
        let vkey = format!("versions[{vi}]");
        let at = |key: &str| format!("{vkey}.{key}");
        if policies.version_id(&version.id).is_some() {
            return Err(fail(
                &at("id"),
                format!("version id `{}` is used twice", version.id),
            ));
        }
        let from = date(&version.effective_from).map_err(|r| fail(&at("effective_from"), r))?;
        let to = match &version.effective_to {
            Some(d) => date(d).map_err(|r| fail(&at("effective_to"), r))?,
            None => Day::MAX,
        };
        if to < from {
            return Err(fail(
                &at("effective_to"),
                "effective_to is before effective_from".into(),
            ));
        }

        let mut tier_reduction_bp = [0u32; 3];
        for (tier, reduction) in &version.tier_reduction {
            let key = at(&format!("tier_reduction.{tier}"));
            let slot = TIERS
                .iter()
                .position(|t| t.to_string() == *tier)
                .ok_or_else(|| fail(&key, "contribution tiers are 100, 80 and 60".into()))?;
            tier_reduction_bp[slot] = ratio(reduction).map_err(|r| fail(&key, r))?;
        }
        let secondary_factor_bp = match &version.secondary_factor {
            Some(n) => ratio(n).map_err(|r| fail(&at("secondary_factor"), r))?,
            None => RATIO_ONE,
        };

        let conditions_count = policies.conditions.len();
        let mut benefits: Vec<Benefit> = Vec::new();
        let mut pool_benefits: Vec<(u16, u16)> = Vec::new();
        // Explicit matches first; fallbacks (severity "both", supplementary → employee) after.
        let mut slots = vec![Slot::EMPTY; Coverage::COUNT * Severity::COUNT * conditions_count];
        let mut general = [[Slot::EMPTY; VisitType::COUNT]; Coverage::COUNT];
        let index = |c: Coverage, s: Severity, k: u16| {
            c as usize * Severity::COUNT * conditions_count
                + s as usize * conditions_count
                + k as usize
        };
        for (bi, b) in version.benefits.iter().enumerate() {
            let bkey = format!("{vkey}.benefits[{bi}]");
            let at = |key: &str| format!("{bkey}.{key}");
            check_identifier(&b.name).map_err(|r| fail(&at("name"), r))?;
            let coverage = Coverage::parse(&b.coverage).ok_or_else(|| {
                fail(
                    &at("coverage"),
                    format!(
                        "`{}` is not resident, employee or employee_supplementary",
                        b.coverage
                    ),
                )
            })?;
            let severities: Vec<Severity> = match &b.severity {
                None => Severity::ALL.to_vec(),
                Some(s) => vec![Severity::parse(s).ok_or_else(|| {
                    fail(&at("severity"), format!("`{s}` is not normal or severe"))
                })?],
            };
            let mut visit_mask = 0u8;
            let visit_types = b
                .visit_types
                .clone()
                .unwrap_or_else(|| vec!["outpatient".into(), "pharmacy".into()]);
            for v in &visit_types {
                let v = VisitType::parse(v).ok_or_else(|| {
                    fail(&at("visit_types"), format!("`{v}` is not a visit type"))
                })?;
                visit_mask |= 1 << v as u8;
            }
            if visit_mask == 0 {
                return Err(fail(
                    &at("visit_types"),
                    "a benefit must pay some visit type".into(),
                ));
            }
            let inpatient_only = visit_mask == 1 << VisitType::Inpatient as u8;
            if b.deductible_per == DeductiblePer::Admission && !inpatient_only {
                return Err(fail(
                    &at("deductible_per"),
                    "a deductible per admission needs visit_types = [\"inpatient\"]".into(),
                ));
            }
            let annual_cap_fen = match &b.annual_cap {
                Some(n) => {
                    let cap = money(n).map_err(|r| fail(&at("annual_cap"), r))?;
                    if cap == 0 {
                        return Err(fail(&at("annual_cap"), "a cap of 0 pays nothing".into()));
                    }
                    Some(cap)
                }
                None => None,
            };
            let mut level_ratio = [LevelRatio::NotCovered; Level::COUNT];
            for key in b.ratio.keys() {
                if Level::parse(key).is_none() {
                    return Err(fail(
                        &at(&format!("ratio.{key}")),
                        "unknown level (primary, secondary, tertiary, pharmacy)".into(),
                    ));
                }
            }
            for level in Level::ALL {
                let key = at(&format!("ratio.{level}"));
                let entry = b.ratio.get(level.as_str()).ok_or_else(|| {
                    fail(
                        &key,
                        "missing level: every level must be listed (a ratio, \
                         \"not_covered\" or, for pharmacy, \"prescriber_level\")"
                            .into(),
                    )
                })?;
                level_ratio[*level as usize] = match entry {
                    RatioEntry::Ratio(n) => LevelRatio::Ratio(ratio(n).map_err(|r| fail(&key, r))?),
                    RatioEntry::NotCovered => LevelRatio::NotCovered,
                    RatioEntry::PrescriberLevel if *level == Level::Pharmacy => {
                        LevelRatio::PrescriberLevel
                    }
                    RatioEntry::PrescriberLevel => {
                        return Err(fail(
                            &key,
                            "prescriber_level applies to pharmacy only".into(),
                        ))
                    }
                };
            }
            let deductible_fen = deductible(&b.deductible, b.deductible_per, &level_ratio)
                .map_err(|(key, r)| fail(&at(&key), r))?;
            let referral_waiver = match b.referral_waiver {
                Some(_) if b.deductible_per != DeductiblePer::Admission => {
                    return Err(fail(
                        &at("referral_waiver"),
                        "referral waivers apply to per-admission deductibles only".into(),
                    ))
                }
                Some(w) => w,
                None => raw::ReferralWaiver {
                    upward_in_community: false,
                    downward: false,
                    within_days: None,
                },
            };
            let deductible_pool = match &b.deductible_shared {
                None => NONE,
                Some(_) if b.deductible_per != DeductiblePer::Year => {
                    return Err(fail(
                        &at("deductible_shared"),
                        "only an annual deductible can be shared".into(),
                    ))
                }
                Some(name) => {
                    check_identifier(name).map_err(|r| fail(&at("deductible_shared"), r))?;
                    let pool = policies
                        .pools
                        .intern(&format!("{}:deductible.{name}", coverage.as_str()));
                    if let Some((other, _)) = benefits.iter().enumerate().find(|(_, o)| {
                        o.deductible_pool == pool && o.deductible_fen != deductible_fen
                    }) {
                        return Err(fail(
                            &at("deductible"),
                            format!(
                                "shares deductible `{name}` with benefits[{other}] but not its amount"
                            ),
                        ));
                    }
                    pool
                }
            };
            if b.tier_reduction && coverage != Coverage::Employee {
                return Err(fail(
                    &at("tier_reduction"),
                    "the contribution-tier reduction applies to the employee scheme only".into(),
                ));
            }
            let benefit_id = benefits.len() as u16;
            match (b.scope, b.cap_per) {
                (Scope::RegisteredConditions, None) => {
                    return Err(fail(
                        &at("cap_per"),
                        "say whether the cap is per `benefit` or per `condition`".into(),
                    ))
                }
                (Scope::RegisteredConditions, Some(_)) if b.conditions.is_empty() => {
                    return Err(fail(
                        &at("conditions"),
                        "a benefit needs a condition (or scope = \"general\")".into(),
                    ))
                }
                (Scope::General, _) if !b.conditions.is_empty() || b.severity.is_some() => {
                    return Err(fail(
                        &at("scope"),
                        "a general benefit pays every claim of its visit types: it takes no \
                         conditions or severity"
                            .into(),
                    ))
                }
                (Scope::General, Some(CapPer::Condition)) => {
                    return Err(fail(
                        &at("cap_per"),
                        "a general benefit has no conditions to cap one by one".into(),
                    ))
                }
                (Scope::General, _) if b.secondary_factor => {
                    return Err(fail(
                        &at("secondary_factor"),
                        "a general benefit has no primary or secondary condition".into(),
                    ))
                }
                (Scope::General, _) => {
                    let label = policies.labels.intern(&b.name);
                    let pool = policies
                        .pools
                        .intern(&format!("{}:{}", coverage.as_str(), b.name));
                    pool_benefits.push((pool, benefit_id));
                    for visit in VisitType::ALL {
                        if visit_mask & (1 << *visit as u8) == 0 {
                            continue;
                        }
                        let slot = &mut general[coverage as usize][*visit as usize];
                        if slot.benefit != NONE {
                            return Err(fail(
                                &bkey,
                                format!(
                                    "overlaps benefits[{}]: both are general benefits paying {} \
                                     claims for {}",
                                    slot.benefit,
                                    visit.as_str(),
                                    coverage.as_str()
                                ),
                            ));
                        }
                        *slot = Slot {
                            benefit: benefit_id,
                            label,
                            pool,
                        };
                    }
                }
                (Scope::RegisteredConditions, Some(_)) => {}
            }
            let cap_per = b.cap_per.unwrap_or(CapPer::Benefit);
            for condition in &b.conditions {
                if !file.conditions.contains_key(condition) {
                    return Err(fail(
                        &at("conditions"),
                        format!("`{condition}` is not defined under [conditions]"),
                    ));
                }
                let cid = policies.conditions.intern(condition);
                let label = policies.labels.intern(&format!("{}.{condition}", b.name));
                // Each scheme's fund keeps its own caps: the pool is named with the coverage.
                let pool_name = match cap_per {
                    CapPer::Benefit => format!("{}:{}", coverage.as_str(), b.name),
                    CapPer::Condition => format!("{}:{}.{condition}", coverage.as_str(), b.name),
                };
                let pool = policies.pools.intern(&pool_name);
                if !pool_benefits.contains(&(pool, benefit_id)) {
                    pool_benefits.push((pool, benefit_id));
                }
                for &severity in &severities {
                    let slot = &mut slots[index(coverage, severity, cid)];
                    if slot.benefit != NONE {
                        return Err(fail(
                            &bkey,
                            format!(
                                "overlaps benefits[{}]: both pay {condition} for {} {}",
                                slot.benefit,
                                coverage.as_str(),
                                severity.as_str()
                            ),
                        ));
                    }
                    *slot = Slot {
                        benefit: benefit_id,
                        label,
                        pool,
                    };
                }
            }
            benefits.push(Benefit {
                name: b.name.clone(),
                deductible_fen,
                deductible_per: b.deductible_per,
                deductible_pool,
                referral_waiver,
                annual_cap_fen,
                cap_basis: b.cap_basis,
                ratio: level_ratio,
                tier_reduction: b.tier_reduction,
                secondary_factor_bp: if b.secondary_factor {
                    secondary_factor_bp
                } else {
                    RATIO_ONE
                },
                visit_mask,
            });
            let table = tree["versions"][vi]["benefits"][bi].as_table();
            record_assumed(policies, path, table, &b.assumed, &version.id, &at)?;
        }
        // A pool is one cap: benefits sharing it must agree on it, or a reversal could not
        // tell which cap it gives back to.
        for &(pool, b) in &pool_benefits {
            for &(other_pool, o) in &pool_benefits {
                let (x, y) = (&benefits[b as usize], &benefits[o as usize]);
                if pool == other_pool
                    && (
                        x.annual_cap_fen,
                        x.cap_basis,
                        x.deductible_fen,
                        x.deductible_per,
                        x.deductible_pool,
                    ) != (
                        y.annual_cap_fen,
                        y.cap_basis,
                        y.deductible_fen,
                        y.deductible_per,
                        y.deductible_pool,
                    )
                {
                    return Err(fail(
                        &format!("{vkey}.benefits[{o}]"),
                        format!(
                            "shares the cap pool `{}` with benefits[{b}] but not its cap, \
                             basis, deductible and deductible sharing",
                            policies.pools[pool as usize]
                        ),
                    ));
                }
            }
        }
        if version.secondary_factor.is_some()
            && !version.benefits.iter().any(|b| b.secondary_factor)
        {
            return Err(fail(
                &at("secondary_factor"),
                "no benefit of this version applies the secondary factor".into(),
            ));
        }
        // Employee-supplementary members fall back to the employee table where the policy has no
        // supplementary benefit for a condition (every region but Ezhou).
        for severity in Severity::ALL {
            for k in 0..conditions_count as u16 {
                let supplementary = index(Coverage::EmployeeSupplementary, *severity, k);
                if slots[supplementary].benefit == NONE {
                    slots[supplementary] = slots[index(Coverage::Employee, *severity, k)];
                }
            }
        }
        let employee = general[Coverage::Employee as usize];
        for (slot, fallback) in general[Coverage::EmployeeSupplementary as usize]
            .iter_mut()
            .zip(employee)
        {
            if slot.benefit == NONE {
                *slot = fallback;
            }
        }
        let critical_illness = compile_critical_illness(policies, path, &tree, vi, version)?;
        let assistance = compile_assistance(policies, path, &tree, vi, version)?;
        let audit = match &version.audit {
            None => None,
            Some(a) => Some(compile_audit(policies, path, &tree, vi, version, a)?),
        };
        let table = tree["versions"][vi].as_table();
        record_assumed(policies, path, table, &version.assumed, &version.id, &at)?;
        let vid = policies.versions.len() as u16;
        version_ids.push(vid);
        policies.version_by_id.insert(version.id.clone(), vid);
        policies.versions.push(Version {
            text_hash: text_hash(&tree, vi),
            id: version.id.clone(),
            region,
            from,
            to,
            start_offset_days: match version.benefit_start {
                BenefitStart::ApprovalDay => 0,
                BenefitStart::NextDay => 1,
            },
            family_doctor_required: version.family_doctor_required,
            tier_reduction_bp,
            icd_prefixes: icd_prefixes.clone(),
            benefits,
            pool_benefits,
            slots,
            general,
            critical_illness,
            assistance,
            audit,
        });
    }

    // Versions of one region may not overlap: each day has at most one policy in force.
    version_ids.sort_by_key(|&v| policies.versions[v as usize].from);
    for pair in version_ids.windows(2) {
        let (a, b) = (
            &policies.versions[pair[0] as usize],
            &policies.versions[pair[1] as usize],
        );
        if b.from <= a.to {
            let bi = file.versions.iter().position(|v| v.id == b.id).unwrap_or(0);
            return Err(fail(
                &format!("versions[{bi}].effective_from"),
                format!("version `{}` overlaps version `{}`", b.id, a.id),
            ));
        }
    }

    // A pool's year-to-date state must mean the same in every version that uses it: a mid-year
    // version may change a cap, not what the state counts.
    let mut kinds: std::collections::HashMap<u16, (usize, DeductiblePer, raw::CapBasis)> =
        std::collections::HashMap::new();
    for &v in &version_ids {
        let version = &policies.versions[v as usize];
        let vi = file
            .versions
            .iter()
            .position(|x| x.id == version.id)
            .unwrap_or(0);
        for &(pool, b) in &version.pool_benefits {
            let b = &version.benefits[b as usize];
            let kind = (b.deductible_per, b.cap_basis);
            match kinds.get(&pool) {
                Some(&(first, per, basis)) if (per, basis) != kind => {
                    return Err(fail(
                        &format!("versions[{vi}]"),
                        format!(
                        "pool `{}` counts its deductible or cap differently from versions[{first}]",
                        policies.pools[pool as usize]
                    ),
                    ))
                }
                Some(_) => {}
                None => {
                    kinds.insert(pool, (vi, kind.0, kind.1));
                }
            }
        }
    }
    if let Some(c) = &file.capitation {
        let benefits: Vec<&str> = file
            .versions
            .iter()
            .flat_map(|v| v.benefits.iter().map(|b| b.name.as_str()))
            .collect();
        let compiled = capitation(policies, c, &benefits)
            .map_err(|(key, r)| fail(&format!("capitation.{key}"), r))?;
        let table = tree.get("capitation").and_then(|t| t.as_table());
        let at = |key: &str| format!("capitation.{key}");
        record_assumed(policies, path, table, &c.assumed, "capitation", &at)?;
        policies.capitation.push((region, compiled));
    }
    policies.region_by_code.insert(file.region.clone(), region);
    policies.regions.push(RegionPolicy {
        code: file.region,
        name: file.name,
        source: file.source,
        file: path.to_path_buf(),
        versions: version_ids,
    });
    // Slot tables were sized by the condition count at the time; a later file may add
    // conditions, so widen every earlier table to the final count.
    let n = policies.conditions.len();
    for v in &mut policies.versions {
        widen_slots(v, n);
    }
    Ok(())
}

/// A benefit's deductible by level: one amount everywhere, or (per admission only) a table that
/// lists every level the benefit pays at.
fn deductible(
    d: &raw::Deductible,
    per: DeductiblePer,
    ratios: &[LevelRatio; Level::COUNT],
) -> std::result::Result<[i64; Level::COUNT], (String, String)> {
    match d {
        raw::Deductible::Amount(n) => {
            let fen = money(n).map_err(|r| ("deductible".to_string(), r))?;
            Ok([fen; Level::COUNT])
        }
        raw::Deductible::ByLevel(_) if per != DeductiblePer::Admission => Err((
            "deductible".into(),
            "a deductible by level needs deductible_per = \"admission\"".into(),
        )),
        raw::Deductible::ByLevel(table) => {
            let mut out = [0; Level::COUNT];
            for (key, n) in table {
                let level = Level::parse(key).ok_or_else(|| {
                    (
                        format!("deductible.{key}"),
                        "unknown level (primary, secondary, tertiary, pharmacy)".to_string(),
                    )
                })?;
                out[level as usize] = money(n).map_err(|r| (format!("deductible.{key}"), r))?;
            }
            for level in Level::ALL {
                if ratios[*level as usize] != LevelRatio::NotCovered
                    && !table.contains_key(level.as_str())
                {
                    return Err((
                        format!("deductible.{level}"),
                        "missing level: the benefit pays here, so its deductible must be listed"
                            .into(),
                    ));
                }
            }
            Ok(out)
        }
    }
}

/// A layer's coverage; supplementary members fall back to the employee table.
fn layer_coverage(text: &str) -> std::result::Result<Coverage, String> {
    Coverage::parse(text)
        .ok_or_else(|| format!("`{text}` is not resident, employee or employee_supplementary"))
}

fn compile_critical_illness(
    policies: &mut Policies,
    path: &Path,
    tree: &toml::Table,
    vi: usize,
    version: &raw::Version,
) -> Result<[Option<CriticalIllness>; Coverage::COUNT]> {
    let fail = |key: &str, reason: String| Error::policy(path, key, reason);
    let mut out: [Option<CriticalIllness>; Coverage::COUNT] = Default::default();
    for (ci, c) in version.critical_illness.iter().enumerate() {
        let at = |key: &str| format!("versions[{vi}].critical_illness[{ci}].{key}");
        let coverage = layer_coverage(&c.coverage).map_err(|r| fail(&at("coverage"), r))?;
        if out[coverage as usize].is_some() {
            return Err(fail(
                &at("coverage"),
                format!("a second critical-illness table for {coverage}"),
            ));
        }
        let deductible_fen = money(&c.deductible).map_err(|r| fail(&at("deductible"), r))?;
        let mut bands = Vec::with_capacity(c.bands.len());
        for (i, band) in c.bands.iter().enumerate() {
            let above =
                money(&band.above).map_err(|r| fail(&at(&format!("bands[{i}].above")), r))?;
            let r = ratio(&band.ratio).map_err(|r| fail(&at(&format!("bands[{i}].ratio")), r))?;
            let expected_first = i == 0 && above != 0;
            let not_rising = bands.last().is_some_and(|&(prev, _)| above <= prev);
            if expected_first || not_rising {
                return Err(fail(
                    &at(&format!("bands[{i}].above")),
                    "bands start at 0 and rise strictly".into(),
                ));
            }
            bands.push((above, r));
        }
        if bands.is_empty() {
            return Err(fail(&at("bands"), "at least one band is needed".into()));
        }
        let annual_cap_fen = match &c.annual_cap {
            Some(n) => Some(positive_money(n).map_err(|r| fail(&at("annual_cap"), r))?),
            None => None,
        };
        let pool = policies
            .pools
            .intern(&format!("critical_illness:{}", coverage.as_str()));
        out[coverage as usize] = Some(CriticalIllness {
            deductible_fen,
            bands,
            annual_cap_fen,
            pool,
        });
        let table = tree["versions"][vi]["critical_illness"][ci].as_table();
        record_assumed(policies, path, table, &c.assumed, &version.id, &at)?;
    }
    let (employee, supplementary) = (
        Coverage::Employee as usize,
        Coverage::EmployeeSupplementary as usize,
    );
    if out[supplementary].is_none() {
        out[supplementary] = out[employee].clone();
    }
    Ok(out)
}

fn compile_assistance(
    policies: &mut Policies,
    path: &Path,
    tree: &toml::Table,
    vi: usize,
    version: &raw::Version,
) -> Result<[Option<Assistance>; AssistanceCategory::COUNT]> {
    let fail = |key: &str, reason: String| Error::policy(path, key, reason);
    let mut out = [None; AssistanceCategory::COUNT];
    for (ai, a) in version.assistance.iter().enumerate() {
        let at = |key: &str| format!("versions[{vi}].assistance[{ai}].{key}");
        let category = AssistanceCategory::parse(&a.category).ok_or_else(|| {
            fail(
                &at("category"),
                format!(
                    "`{}` is not destitute, minimum_living, low_income_edge or poverty_monitoring",
                    a.category
                ),
            )
        })?;
        if out[category as usize].is_some() {
            return Err(fail(
                &at("category"),
                format!("a second assistance table for {category}"),
            ));
        }
        let deductible_fen = match &a.deductible {
            Some(n) => money(n).map_err(|r| fail(&at("deductible"), r))?,
            None => 0,
        };
        let annual_cap_fen = match &a.annual_cap {
            Some(n) => Some(positive_money(n).map_err(|r| fail(&at("annual_cap"), r))?),
            None => None,
        };
        out[category as usize] = Some(Assistance {
            deductible_fen,
            ratio_bp: ratio(&a.ratio).map_err(|r| fail(&at("ratio"), r))?,
            annual_cap_fen,
            pool: policies.pools.intern("medical_assistance"),
        });
        let table = tree["versions"][vi]["assistance"][ai].as_table();
        record_assumed(policies, path, table, &a.assumed, &version.id, &at)?;
    }
    Ok(out)
}

fn compile_audit(
    policies: &mut Policies,
    path: &Path,
    tree: &toml::Table,
    vi: usize,
    version: &raw::Version,
    a: &raw::AuditTable,
) -> Result<AuditRules> {
    let fail = |key: &str, reason: String| Error::policy(path, key, reason);
    let at = |key: &str| format!("versions[{vi}].audit.{key}");
    let mut weights_bp = DEFAULT_WEIGHTS_BP;
    for (code, w) in &a.weights {
        let key = at(&format!("weights.{code}"));
        let rule = Rule::parse(code)
            .ok_or_else(|| fail(&key, format!("`{code}` is not an audit rule code")))?;
        weights_bp[rule as usize] = ratio(w).map_err(|r| fail(&key, r))?;
    }
    let positive = |key: &str, v: i64| {
        if v > 0 {
            Ok(())
        } else {
            Err(fail(&at(key), "must be positive".into()))
        }
    };
    positive("max_days_supply", a.max_days_supply as i64)?;
    positive("max_claims_per_day", a.max_claims_per_day as i64)?;
    positive("max_claims_per_week", a.max_claims_per_week as i64)?;
    positive("outlier_min_group", a.outlier_min_group as i64)?;
    if a.refill_remaining_days < 0 {
        return Err(fail(
            &at("refill_remaining_days"),
            "must not be negative".into(),
        ));
    }
    let high_cost_fen =
        money(&a.high_cost_threshold).map_err(|r| fail(&at("high_cost_threshold"), r))?;
    let outlier_factor_centi =
        parse_scaled(&a.outlier_mad_factor.0, 2).map_err(|r| fail(&at("outlier_mad_factor"), r))?;
    positive("outlier_mad_factor", outlier_factor_centi)?;
    let table = tree["versions"][vi]["audit"].as_table();
    record_assumed(policies, path, table, &a.assumed, &version.id, &at)?;
    Ok(AuditRules {
        refill_remaining_days: a.refill_remaining_days,
        max_days_supply: a.max_days_supply,
        high_cost_fen,
        max_claims_per_day: a.max_claims_per_day,
        max_claims_per_week: a.max_claims_per_week,
        outlier_factor_centi,
        outlier_min_group: a.outlier_min_group,
        weights_bp,
    })
}

/// A capitation table compiled; an error names the key.
fn capitation(
    policies: &Policies,
    c: &raw::Capitation,
    benefits: &[&str],
) -> std::result::Result<super::Capitation, (String, String)> {
    let conditions = c
        .conditions
        .iter()
        .map(|n| {
            policies
                .condition_id(n)
                .ok_or_else(|| ("conditions".to_string(), format!("unknown condition `{n}`")))
        })
        .collect::<std::result::Result<Vec<u16>, _>>()?;
    if conditions.is_empty() {
        return Err((
            "conditions".into(),
            "a pilot needs at least one condition".into(),
        ));
    }
    let coverage = match c.coverage.as_str() {
        "resident" => Coverage::Resident,
        "employee" => Coverage::Employee,
        other => {
            return Err((
                "coverage".into(),
                format!("`{other}` is not `resident` or `employee`"),
            ))
        }
    };
    let budget = crate::money::parse_scaled(&c.budget_per_person.0, 2)
        .map_err(|e| ("budget_per_person".to_string(), e))?;
    if budget <= 0 {
        return Err(("budget_per_person".into(), "must be above 0".into()));
    }
    for (key, split) in [
        ("surplus_split", c.surplus_split),
        ("overspend_split", c.overspend_split),
    ] {
        if split.iter().sum::<u32>() == 0 {
            return Err((key.into(), "the shares add up to 0".into()));
        }
    }
    for name in &c.excluded_benefits {
        if !benefits.contains(&name.as_str()) {
            return Err((
                "excluded_benefits".into(),
                format!("no benefit of this file is named `{name}`"),
            ));
        }
    }
    if c.excluded_diagnoses.iter().any(|d| d.trim().is_empty()) {
        return Err((
            "excluded_diagnoses".into(),
            "an empty prefix would exclude every claim".into(),
        ));
    }
    Ok(super::Capitation {
        conditions,
        coverage,
        budget_per_person_fen: budget,
        excluded_benefits: c.excluded_benefits.clone(),
        excluded_diagnoses: c
            .excluded_diagnoses
            .iter()
            .map(|d| d.replace('.', "").to_ascii_uppercase())
            .collect(),
        surplus_split: c.surplus_split,
        overspend_split: c.overspend_split,
        overspend_to_community_ranks: c.overspend_to_community_ranks,
    })
}

/// Checks a table's `assumed` keys and lists them for `yibao policy check`.
fn record_assumed(
    policies: &mut Policies,
    path: &Path,
    table: Option<&toml::Table>,
    assumed: &std::collections::BTreeMap<String, String>,
    version: &str,
    at: &dyn Fn(&str) -> String,
) -> Result<()> {
    for (key, why) in assumed {
        check_assumed(table, key)
            .map_err(|r| Error::policy(path, at(&format!("assumed.{key}")), r))?;
        policies.assumptions.push(Assumption {
            file: path.to_path_buf(),
            version: version.to_string(),
            key: at(key),
            why: why.clone(),
        });
    }
    Ok(())
}

fn widen_slots(v: &mut Version, conditions: usize) {
    let old = v.slots.len() / (Coverage::COUNT * Severity::COUNT);
    if old == conditions {
        return;
    }
    let mut slots = vec![Slot::EMPTY; Coverage::COUNT * Severity::COUNT * conditions];
    for block in 0..Coverage::COUNT * Severity::COUNT {
        slots[block * conditions..block * conditions + old]
            .copy_from_slice(&v.slots[block * old..block * old + old]);
    }
    v.slots = slots;
}

fn date(d: &toml::value::Datetime) -> Result<Day, String> {
    match (&d.date, &d.time) {
        (Some(date), None) => Ok(days_from_civil(
            date.year as i32,
            date.month as u32,
            date.day as u32,
        )),
        _ => Err(format!("`{d}` is not a plain date (YYYY-MM-DD)")),
    }
}

/// A ratio in basis points, 0 ≤ r ≤ 1, at most four decimals.
fn ratio(n: &Number) -> Result<u32, String> {
    let bp = parse_scaled(&n.0, 4)?;
    if !(0..=RATIO_ONE as i64).contains(&bp) {
        return Err(format!("ratio {} is outside 0..1", n.0));
    }
    Ok(bp as u32)
}

/// Yuan to fen, ≥ 0, at most two decimals.
fn money(n: &Number) -> Result<i64, String> {
    let fen = parse_scaled(&n.0, 2)?;
    if fen < 0 {
        return Err(format!("amount {} is negative", n.0));
    }
    Ok(fen)
}

/// A cap: money above 0 (a cap of 0 would pay nothing; leave the cap out for none).
fn positive_money(n: &Number) -> Result<i64, String> {
    match money(n)? {
        0 => Err("a cap of 0 pays nothing".into()),
        fen => Ok(fen),
    }
}

fn check_identifier(name: &str) -> Result<(), String> {
    if !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        Ok(())
    } else {
        Err(format!("`{name}` must be lower-case letters, digits and _"))
    }
}

/// An `assumed` key must name a key present in its table (dots descend into sub-tables).
fn check_assumed(table: Option<&toml::Table>, key: &str) -> Result<(), String> {
    let mut value: Option<&toml::Value> = None;
    let mut current = table;
    for part in key.split('.') {
        value = current.and_then(|t| t.get(part));
        current = value.and_then(|v| v.as_table());
    }
    match value {
        Some(_) => Ok(()),
        None => Err(format!(
            "`{key}` is marked assumed but is not set in this table"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
region = "999999"
name = "Test"
source = "test"
[conditions.hypertension]
icd10 = ["I10"]
[[versions]]
id = "t-1"
effective_from = 2024-01-01
effective_to = 2024-06-30
benefit_start = "approval_day"
[[versions.benefits]]
name = "two_diseases"
coverage = "resident"
conditions = ["hypertension"]
deductible = 0
annual_cap = 1000
cap_per = "condition"
ratio = { primary = 0.6, secondary = 0.5, tertiary = "not_covered", pharmacy = "prescriber_level" }
assumed = { annual_cap = "test" }
[[versions]]
id = "t-2"
effective_from = 2024-07-01
benefit_start = "next_day"
"#;

    fn compile(text: &str) -> Result<Policies> {
        let mut p = Policies::default();
        compile_file(&mut p, Path::new("test.toml"), text)?;
        Ok(p)
    }

    fn refusal(text: &str) -> String {
        match compile(text) {
            Ok(_) => panic!("policy was accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn compiles_into_tables() {
        let p = compile(GOOD).unwrap();
        assert_eq!(p.versions.len(), 2);
        let v = &p.versions[0];
        assert_eq!(v.from, days_from_civil(2024, 1, 1));
        assert_eq!(v.to, days_from_civil(2024, 6, 30));
        let b = &v.benefits[0];
        assert_eq!(b.ratio[Level::Primary as usize], LevelRatio::Ratio(6000));
        assert_eq!(b.ratio[Level::Tertiary as usize], LevelRatio::NotCovered);
        assert_eq!(b.annual_cap_fen, Some(100_000));
        assert_eq!(p.versions[1].start_offset_days, 1);
        let hypertension = p.condition_id("hypertension").unwrap();
        assert_eq!(v.condition_of("i10.9"), Some(hypertension));
        assert_eq!(v.condition_of("I11"), None);
        let slot = v
            .slot(Coverage::Resident, Severity::Severe, hypertension)
            .unwrap();
        assert_eq!(p.labels[slot.label as usize], "two_diseases.hypertension");
        assert_eq!(
            p.pools[slot.pool as usize],
            "resident:two_diseases.hypertension"
        );
        assert!(v
            .slot(Coverage::Employee, Severity::Normal, hypertension)
            .is_none());
        assert_eq!(p.assumptions.len(), 1);
        assert_eq!(p.assumptions[0].key, "versions[0].benefits[0].annual_cap");
        assert_eq!(p.version_on(0, days_from_civil(2024, 7, 1)), Some(1));
        assert_eq!(p.version_on(0, days_from_civil(2023, 12, 31)), None);
    }

    #[test]
    fn refuses_twin_benefits_sharing_a_cap_but_not_where_their_deductible_goes() {
        // A second `two_diseases` for the same coverage and condition (severe patients) shares
        // its cap pool; were only one to share a deductible, a reversal could not tell which
        // pool to give back to.
        let twin = GOOD.replacen(
            "coverage = \"resident\"\n",
            "coverage = \"resident\"\nseverity = \"normal\"\n",
            1,
        );
        let twin = twin.replace(
            "[[versions]]\nid = \"t-2\"",
            "[[versions.benefits]]\nname = \"two_diseases\"\ncoverage = \"resident\"\n\
             severity = \"severe\"\nconditions = [\"hypertension\"]\ndeductible = 0\nannual_cap = 1000\n\
             cap_per = \"condition\"\ndeductible_shared = \"outpatient\"\n\
             ratio = { primary = 0.6, secondary = 0.5, tertiary = \"not_covered\", \
             pharmacy = \"prescriber_level\" }\n[[versions]]\nid = \"t-2\"",
        );
        let e = refusal(&twin);
        assert!(
            e.contains("versions[0].benefits[")
                && e.contains("shares the cap pool `resident:two_diseases.hypertension`")
                && e.contains("deductible sharing"),
            "{e}"
        );
    }

    #[test]
    fn refuses_an_unknown_key() {
        let e = refusal(&GOOD.replace("deductible = 0", "deductable = 0"));
        assert!(e.contains("test.toml") && e.contains("deductable"), "{e}");
    }

    #[test]
    fn refuses_a_ratio_above_one() {
        let e = refusal(&GOOD.replace("primary = 0.6", "primary = 1.2"));
        assert!(e.contains("versions[0].benefits[0].ratio.primary"), "{e}");
        assert!(e.contains("outside 0..1"), "{e}");
    }

    #[test]
    fn refuses_overlapping_versions() {
        let e =
            refusal(&GOOD.replace("effective_from = 2024-07-01", "effective_from = 2024-06-30"));
        assert!(
            e.contains("versions[1].effective_from") && e.contains("overlaps"),
            "{e}"
        );
    }

    #[test]
    fn refuses_a_missing_level() {
        let e = refusal(&GOOD.replace(", tertiary = \"not_covered\"", ""));
        assert!(
            e.contains("ratio.tertiary") && e.contains("missing level"),
            "{e}"
        );
    }

    #[test]
    fn refuses_an_unknown_level_and_prescriber_level_off_pharmacy() {
        let e = refusal(&GOOD.replace(
            "tertiary = \"not_covered\"",
            "tertiary = \"not_covered\", quaternary = 0.1",
        ));
        assert!(e.contains("ratio.quaternary"), "{e}");
        let e = refusal(&GOOD.replace("secondary = 0.5", "secondary = \"prescriber_level\""));
        assert!(e.contains("pharmacy only"), "{e}");
    }

    #[test]
    fn refuses_an_assumption_on_a_missing_key() {
        let e = refusal(&GOOD.replace("assumed = { annual_cap", "assumed = { annual_kap"));
        assert!(e.contains("assumed.annual_kap"), "{e}");
    }

    #[test]
    fn refuses_an_undefined_condition_and_tier_reduction_for_residents() {
        let e =
            refusal(&GOOD.replace("conditions = [\"hypertension\"]", "conditions = [\"gout\"]"));
        assert!(e.contains("`gout` is not defined"), "{e}");
        let e = refusal(&GOOD.replace(
            "cap_per = \"condition\"",
            "cap_per = \"condition\"\ntier_reduction = true",
        ));
        assert!(e.contains("employee scheme only"), "{e}");
    }

    #[test]
    fn a_capitation_table_compiles_and_refuses_what_would_count_wrongly() {
        let table = |excluded_benefits: &str, excluded_diagnoses: &str| {
            format!(
                "{GOOD}[capitation]\nconditions = [\"hypertension\"]\ncoverage = \"resident\"\n\
                 budget_per_person = 3070.50\nexcluded_benefits = [{excluded_benefits}]\n\
                 excluded_diagnoses = [{excluded_diagnoses}]\nsurplus_split = [2, 6, 2]\n\
                 overspend_split = [4, 5, 1]\noverspend_to_community_ranks = 6\n"
            )
        };
        let p = compile(&table("\"two_diseases\"", "\"S\", \"t.0\"")).unwrap();
        let (region, c) = &p.capitation[0];
        assert_eq!(*region, 0);
        assert_eq!(c.budget_per_person_fen, 307_050);
        assert_eq!(c.excluded_diagnoses, ["S", "T0"]);
        assert_eq!((c.surplus_split, c.overspend_split), ([2, 6, 2], [4, 5, 1]));
        let typo = refusal(&table("\"two_disease\"", ""));
        assert!(
            typo.contains("capitation.excluded_benefits") && typo.contains("two_disease"),
            "{typo}"
        );
        let everything = refusal(&table("", "\"\""));
        assert!(
            everything.contains("capitation.excluded_diagnoses"),
            "{everything}"
        );
    }

    #[test]
    fn refuses_money_with_too_many_decimals() {
        let e = refusal(&GOOD.replace("annual_cap = 1000", "annual_cap = 1000.005"));
        assert!(
            e.contains("annual_cap") && e.contains("decimal places"),
            "{e}"
        );
    }

    #[test]
    fn repository_policies_compile_and_list_assumptions() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        let p = Policies::load_dir(&dir).unwrap();
        let codes: Vec<&str> = p.regions.iter().map(|r| r.code.as_str()).collect();
        assert_eq!(codes, ["420700", "330400", "341502", "371100", "371000"]);
        // Rizhao states no ratio or cap: every one of its benefits' numbers is assumed.
        assert!(p
            .assumptions
            .iter()
            .any(|a| a.version == "rizhao-2020" && a.key.ends_with("annual_cap")));
        // Ezhou states every number of its six two-diseases benefits: none is assumed, while
        // the general, inpatient and later-layer tables it does not state all are.
        let ezhou: Vec<&str> = p
            .assumptions
            .iter()
            .filter(|a| a.version == "ezhou-2022")
            .map(|a| a.key.as_str())
            .collect();
        assert!(ezhou
            .iter()
            .all(|k| (0..6).all(|b| !k.starts_with(&format!("versions[0].benefits[{b}].")))));
        for table in [
            "benefits[6]",
            "benefits[9]",
            "critical_illness[1]",
            "assistance[3]",
        ] {
            assert!(
                ezhou.iter().any(|k| k.contains(table)),
                "{table}: {ezhou:?}"
            );
        }
        let report = p.check_report();
        assert!(
            report.contains("weihai-2023-05: 2023-05-01 .. open"),
            "{report}"
        );
    }
}
