//! `yibao report`: the statutory tables the documents prescribe, from a run's settlements and the
//! registry — Ezhou's monthly annexes 4–7 (seed 004: the two-diseases programme's report per
//! scheme, and the persons under management per reporting unit) and Jiaxing's quarterly
//! two-diseases table per scheme (seed 000, clauses 5–7, which prescribe a quarterly report
//! without laying it out: yibao lays it out as Ezhou's). Written as one `.xlsx` workbook laid
//! out like the annexes, with the documents' Chinese headers ([`table`]), and as one CSV per
//! table.
//!
//! What comes from the run and what an operator supplies: every figure is computed — medical
//! cost and amount reimbursed per level from the settlements, insured and registered persons
//! from the registry, persons under management per unit from the registrations (and, given
//! `--claims`, the institutions of the persons' claims); the signature line (填报单位, 填报人,
//! 审核人, 填报日期) is left for the operator to fill in.

pub mod table;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Decimal128Type, TimestampMillisecondType};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;

use crate::domain::{Coverage, Day, Severity};
use crate::error::{Error, Result};
use crate::ingest::registry::Registry;
use crate::policy::Policies;
use table::{Cell, Heading, Table};

/// Which statutory report, and of which period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportKind {
    /// Ezhou's monthly annexes 4–7, of one calendar month.
    EzhouMonthly { year: i32, month: u32 },
    /// Jiaxing's quarterly two-diseases tables (residents, employees), of quarter 1–4.
    JiaxingQuarterly { year: i32, quarter: u32 },
}

/// What `yibao report` was asked to do.
#[derive(Debug, Clone)]
pub struct ReportArgs {
    pub kind: ReportKind,
    /// `settlements.parquet` of one or more runs (a file, or a directory searched for them).
    pub settlements: PathBuf,
    pub persons: PathBuf,
    pub registrations: PathBuf,
    /// The runs' claims: with them, annex 7 counts persons per institution.
    pub claims: Option<PathBuf>,
    pub policies: PathBuf,
    pub out: PathBuf,
}

/// What was written.
#[derive(Debug)]
pub struct Written {
    pub workbook: PathBuf,
    pub csv: Vec<PathBuf>,
    /// Settlement rows of the period counted in the tables.
    pub rows: u64,
}

const EZHOU: &str = "420700";
const JIAXING: &str = "330400";

/// The days of the period, first and last inclusive, and how the tables name it.
struct Period {
    first: Day,
    last: Day,
    label: String,
}

fn period(kind: ReportKind) -> Period {
    use crate::domain::days_from_civil;
    let next_month = |y: i32, m: u32| if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    match kind {
        ReportKind::EzhouMonthly { year, month } => {
            let (ny, nm) = next_month(year, month);
            Period {
                first: days_from_civil(year, month, 1),
                last: days_from_civil(ny, nm, 1) - 1,
                label: format!("{year}年{month}月"),
            }
        }
        ReportKind::JiaxingQuarterly { year, quarter } => {
            let first_month = 3 * (quarter - 1) + 1;
            let (ny, nm) = next_month(year, first_month + 2);
            Period {
                first: days_from_civil(year, first_month, 1),
                last: days_from_civil(ny, nm, 1) - 1,
                label: format!("{year}年第{quarter}季度"),
            }
        }
    }
}

/// The documents' columns of institution level, in order, with the settlements' level codes.
const LEVELS: [(&str, &str); 4] = [
    ("primary", "一级及以下医疗机构"),
    ("secondary", "二级医疗机构"),
    ("tertiary", "三级医疗机构"),
    ("pharmacy", "定点药店"),
];

/// The conditions' names as the documents write them.
const CONDITION_NAMES: [(&str, &str); 13] = [
    ("hypertension", "高血压"),
    ("diabetes", "糖尿病"),
    ("alzheimers", "阿尔茨海默病"),
    ("parkinsons", "帕金森病"),
    ("coronary_heart_disease", "冠状动脉粥样硬化性心脏病"),
    ("chronic_kidney_disease", "慢性肾脏病"),
    ("asthma", "支气管哮喘"),
    ("tuberculosis", "肺结核"),
    ("peritoneal_dialysis", "腹膜透析"),
    ("copd", "慢性阻塞性肺疾病"),
    ("schizophrenia", "精神分裂症（情感性精神病）"),
    ("chronic_liver_disease", "慢性肝病"),
    ("rheumatoid_arthritis", "类风湿关节炎"),
];

/// One settlement row with a benefit, of a person of the registry.
pub(crate) struct Settled {
    pub person: u32,
    pub coverage: Coverage,
    pub claim_id: String,
    pub settled_at: i64,
    /// Index into [`LEVELS`]; `None` for a level the documents do not name.
    pub level: Option<usize>,
    pub benefit: String,
    /// The claim's total: fund + critical illness + assistance + patient.
    pub cost_fen: i128,
    pub fund_fen: i128,
}

fn utf8(batch: &RecordBatch, name: &str, path: &Path) -> Result<arrow::array::StringArray> {
    let column = batch
        .column_by_name(name)
        .ok_or_else(|| Error::schema(path, name, "missing"))?;
    let cast = arrow::compute::cast(column, &DataType::Utf8)
        .map_err(|_| Error::schema(path, name, "not a text column"))?;
    Ok(cast.as_string::<i32>().clone())
}

fn money(batch: &RecordBatch, name: &str, path: &Path) -> Result<Vec<i128>> {
    let column = batch
        .column_by_name(name)
        .ok_or_else(|| Error::schema(path, name, "missing"))?;
    let d = column
        .as_primitive_opt::<Decimal128Type>()
        .filter(|_| column.data_type() == &DataType::Decimal128(18, 2))
        .ok_or_else(|| Error::schema(path, name, "not Decimal128(18, 2)"))?;
    Ok((0..d.len())
        .map(|i| if d.is_valid(i) { d.value(i) } else { 0 })
        .collect())
}

/// The settlement files under `path`: the file, or every `settlements.parquet` below a
/// directory (a month of nightly output directories), in path order.
fn settlement_files(path: &Path) -> Result<Vec<PathBuf>> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut found = Vec::new();
    let mut dirs = vec![path.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
            let p = entry.map_err(|e| Error::io(&dir, e))?.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.file_name().is_some_and(|n| n == "settlements.parquet") {
                found.push(p);
            }
        }
    }
    found.sort();
    if found.is_empty() {
        return Err(Error::Usage(format!(
            "{}: no settlements.parquet in this directory",
            path.display()
        )));
    }
    Ok(found)
}

/// The period's settlement rows of persons of `region` whose benefit `wanted` accepts.
fn read_settled(
    args: &ReportArgs,
    registry: &Registry,
    region: u16,
    period: &Period,
    wanted: &dyn Fn(&str) -> bool,
) -> Result<Vec<Settled>> {
    settled_rows(
        &args.settlements,
        registry,
        period.first,
        period.last,
        &|p, benefit| registry.person(p).region == region && wanted(benefit),
    )
}

/// The settlement rows with a benefit under `settlements` (a file, or a directory searched for
/// `settlements.parquet`) settled from day `first` to `last`, of registry persons `keep`
/// accepts (dense id, benefit label).
pub(crate) fn settled_rows(
    settlements: &Path,
    registry: &Registry,
    first: Day,
    last: Day,
    keep: &dyn Fn(u32, &str) -> bool,
) -> Result<Vec<Settled>> {
    const COLUMNS: [&str; 9] = [
        "claim_id",
        "person_id",
        "settled_at",
        "institution_level",
        "benefit",
        "fund_paid",
        "critical_illness_paid",
        "assistance_paid",
        "patient_pays",
    ];
    let mut out = Vec::new();
    for path in settlement_files(settlements)? {
        let file = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
        let builder =
            ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| Error::parquet(&path, e))?;
        let schema = builder.parquet_schema();
        let roots: Vec<usize> = COLUMNS
            .iter()
            .map(|name| {
                (0..schema.root_schema().get_fields().len())
                    .find(|&i| schema.root_schema().get_fields()[i].name() == *name)
                    .ok_or_else(|| Error::schema(&path, *name, "missing: not a settlements file"))
            })
            .collect::<Result<_>>()?;
        let mask = ProjectionMask::roots(schema, roots);
        let reader = builder
            .with_projection(mask)
            .build()
            .map_err(|e| Error::parquet(&path, e))?;
        for batch in reader {
            let batch = batch.map_err(|e| Error::corrupt(&path, e))?;
            let benefit = utf8(&batch, "benefit", &path)?;
            let persons = utf8(&batch, "person_id", &path)?;
            let claims = utf8(&batch, "claim_id", &path)?;
            let levels = utf8(&batch, "institution_level", &path)?;
            let at = batch
                .column_by_name("settled_at")
                .and_then(|c| c.as_primitive_opt::<TimestampMillisecondType>())
                .ok_or_else(|| Error::schema(&path, "settled_at", "not Timestamp(ms)"))?;
            let fund = money(&batch, "fund_paid", &path)?;
            let layers = [
                money(&batch, "critical_illness_paid", &path)?,
                money(&batch, "assistance_paid", &path)?,
                money(&batch, "patient_pays", &path)?,
            ];
            for i in 0..batch.num_rows() {
                if benefit.is_null(i) || at.is_null(i) {
                    continue;
                }
                let day = crate::domain::day_of(at.value(i));
                if day < first || day > last {
                    continue;
                }
                let Some(person) = registry.index.get(persons.value(i)) else {
                    continue;
                };
                if !keep(person, benefit.value(i)) {
                    continue;
                }
                out.push(Settled {
                    person,
                    coverage: registry.person(person).coverage,
                    claim_id: claims.value(i).to_string(),
                    settled_at: at.value(i),
                    level: LEVELS.iter().position(|(code, _)| *code == levels.value(i)),
                    benefit: benefit.value(i).to_string(),
                    // total = fund + critical illness + assistance + patient (every row).
                    cost_fen: fund[i] + layers.iter().map(|l| l[i]).sum::<i128>(),
                    fund_fen: fund[i],
                });
            }
        }
    }
    Ok(out)
}

/// A row of a benefit table: its name, the benefit labels it sums, and the registrations it
/// counts (condition, and severity where the benefit tells them apart).
struct BenefitRow {
    name: String,
    labels: Vec<String>,
    registered: Option<(u16, Option<Severity>)>,
}

/// The header of a benefit table: disease, insured, registered, then cost and reimbursement per
/// level and in total.
fn benefit_header() -> (Vec<Heading>, u16) {
    let mut h = vec![
        Heading::new(0, 0, 2, 1, "疾病病种"),
        Heading::new(0, 1, 2, 1, "参保人数"),
        Heading::new(0, 2, 2, 1, "备案人数"),
    ];
    let groups = LEVELS.iter().map(|(_, n)| *n).chain(["合计"]);
    for (g, name) in groups.enumerate() {
        let c = 3 + 2 * g as u16;
        h.push(Heading::new(0, c, 1, 2, name));
        h.push(Heading::new(1, c, 1, 1, "医疗费"));
        h.push(Heading::new(1, c + 1, 1, 1, "报销额"));
    }
    (h, 2)
}

/// The registry's head counts a report's tables show, counted in one pass over the persons of
/// the region: insured persons per coverage, and registered persons per coverage and condition,
/// of a severity (`Some`) or of either (`None`), with a registration in force on some day of the
/// period.
struct Persons {
    insured: HashMap<u8, u64>,
    registered: HashMap<(u8, u16, Option<u8>), u64>,
}

impl Persons {
    fn count(registry: &Registry, region: u16, period: &Period) -> Persons {
        let mut counts = Persons {
            insured: HashMap::new(),
            registered: HashMap::new(),
        };
        let mut held: Vec<(u16, Option<u8>)> = Vec::new();
        for p in 0..registry.persons.len() as u32 {
            let person = registry.persons[p as usize];
            if person.region != region {
                continue;
            }
            let coverage = person.coverage as u8;
            *counts.insured.entry(coverage).or_default() += 1;
            // A person counts once per (condition, severity) and once per condition.
            held.clear();
            for r in registry.registrations_of(p) {
                if r.approved_on <= period.last && r.ended_on >= period.first {
                    held.push((r.condition, Some(r.severity as u8)));
                    held.push((r.condition, None));
                }
            }
            held.sort_unstable();
            held.dedup();
            for &(condition, severity) in &held {
                *counts
                    .registered
                    .entry((coverage, condition, severity))
                    .or_default() += 1;
            }
        }
        counts
    }

    fn insured(&self, coverage: Coverage) -> u64 {
        self.insured.get(&(coverage as u8)).copied().unwrap_or(0)
    }

    fn registered(&self, coverage: Coverage, condition: u16, severity: Option<Severity>) -> u64 {
        let key = (coverage as u8, condition, severity.map(|s| s as u8));
        self.registered.get(&key).copied().unwrap_or(0)
    }
}

/// The benefit tables of `sheets` (sheet, scheme's name, coverage), titled by `title` of the
/// scheme's name.
fn scheme_tables(
    sheets: &[(&str, &str, Coverage)],
    title: impl Fn(&str) -> String,
    period: &Period,
    rows: &[Option<BenefitRow>],
    settled: &[Settled],
    persons: &Persons,
) -> Vec<Table> {
    let subtitle = format!("统计期间：{}　　金额单位：元", period.label);
    sheets
        .iter()
        .map(|&(sheet, scheme, coverage)| {
            benefit_table(
                sheet,
                title(scheme),
                subtitle.clone(),
                coverage,
                rows,
                settled,
                persons,
            )
        })
        .collect()
}

/// A benefit table of one coverage: `rows` (with `None` for a subtotal of the rows above it
/// since the last subtotal).
fn benefit_table(
    sheet: &str,
    title: String,
    subtitle: String,
    coverage: Coverage,
    rows: &[Option<BenefitRow>],
    settled: &[Settled],
    persons: &Persons,
) -> Table {
    let insured = persons.insured(coverage);
    // (label, level) → (cost, fund)
    let mut sums: HashMap<(&str, Option<usize>), [i128; 2]> = HashMap::new();
    for s in settled.iter().filter(|s| s.coverage == coverage) {
        let e = sums.entry((s.benefit.as_str(), s.level)).or_default();
        e[0] += s.cost_fen;
        e[1] += s.fund_fen;
    }
    let mut body = Vec::new();
    let mut subtotal = (0u64, [[0i128; 2]; 5]);
    for row in rows {
        match row {
            Some(row) => {
                let mut money = [[0i128; 2]; 5];
                for label in &row.labels {
                    for (level, m) in money.iter_mut().take(4).enumerate() {
                        if let Some(v) = sums.get(&(label.as_str(), Some(level))) {
                            m[0] += v[0];
                            m[1] += v[1];
                        }
                    }
                    // A level the documents do not name counts in the total only.
                    if let Some(v) = sums.get(&(label.as_str(), None)) {
                        money[4][0] += v[0];
                        money[4][1] += v[1];
                    }
                }
                for l in 0..4 {
                    money[4][0] += money[l][0];
                    money[4][1] += money[l][1];
                }
                let registered = row
                    .registered
                    .map_or(0, |(c, s)| persons.registered(coverage, c, s));
                subtotal.0 += registered;
                for (t, m) in subtotal.1.iter_mut().zip(money) {
                    t[0] += m[0];
                    t[1] += m[1];
                }
                body.push(benefit_cells(&row.name, insured, registered, money));
            }
            None => {
                body.push(benefit_cells("合计", insured, subtotal.0, subtotal.1));
                subtotal = (0, [[0; 2]; 5]);
            }
        }
    }
    let (header, header_rows) = benefit_header();
    Table {
        sheet: sheet.to_string(),
        title,
        subtitle,
        header,
        header_rows,
        body,
        footer: "填报单位：            填报人：         审核人：        填报日期：".into(),
    }
}

fn benefit_cells(name: &str, insured: u64, registered: u64, money: [[i128; 2]; 5]) -> Vec<Cell> {
    let mut cells = vec![
        Cell::Text(name.to_string()),
        Cell::Count(insured),
        Cell::Count(registered),
    ];
    for m in money {
        cells.push(Cell::Money(m[0]));
        cells.push(Cell::Money(m[1]));
    }
    cells
}

fn region_of(policies: &Policies, code: &str, kind: &str) -> Result<u16> {
    policies.region_index(code).ok_or_else(|| {
        Error::Usage(format!(
            "the {kind} report needs the policy of region {code}, which the policies do not have"
        ))
    })
}

fn condition(policies: &Policies, name: &str) -> Result<u16> {
    policies
        .condition_id(name)
        .ok_or_else(|| Error::Usage(format!("the policies name no condition {name}")))
}

/// Ezhou's annexes 4–6 (one per scheme) and 7.
fn ezhou(
    args: &ReportArgs,
    policies: &Policies,
    registry: &Registry,
    period: &Period,
) -> Result<(Vec<Table>, u64)> {
    let region = region_of(policies, EZHOU, "Ezhou")?;
    let labels = [
        "two_diseases.hypertension",
        "two_diseases.diabetes",
        "two_diseases_severe.hypertension",
        "two_diseases_severe.diabetes",
    ];
    let settled = read_settled(args, registry, region, period, &|b| labels.contains(&b))?;
    let (hypertension, diabetes) = (
        condition(policies, "hypertension")?,
        condition(policies, "diabetes")?,
    );
    let row = |name: &str, label: &str, c: u16, s: Severity| {
        Some(BenefitRow {
            name: name.into(),
            labels: vec![label.into()],
            registered: Some((c, Some(s))),
        })
    };
    let rows = [
        row("普通高血压", labels[0], hypertension, Severity::Normal),
        row("普通糖尿病", labels[1], diabetes, Severity::Normal),
        None,
        row("重症高血压", labels[2], hypertension, Severity::Severe),
        row("重症糖尿病", labels[3], diabetes, Severity::Severe),
        None,
    ];
    let persons = Persons::count(registry, region, period);
    let mut tables = scheme_tables(
        &[
            ("附件4", "城乡居民医保", Coverage::Resident),
            ("附件5", "城镇职工医保", Coverage::Employee),
            ("附件6", "城镇职工补充医保", Coverage::EmployeeSupplementary),
        ],
        |scheme| format!("鄂州市{scheme}“两病”门诊用药保障和健康管理示范城市活动月报表"),
        period,
        &rows,
        &settled,
        &persons,
    );
    tables.push(annex_7(
        args,
        registry,
        region,
        period,
        &settled,
        [hypertension, diabetes],
    )?);
    Ok((tables, settled.len() as u64))
}

/// Annex 7: persons under two-diseases management on the period's last day (a registration in
/// force then), per reporting unit — the institution of the person's latest two-diseases
/// settlement of the period, given the claims; else the whole city in one row.
fn annex_7(
    args: &ReportArgs,
    registry: &Registry,
    region: u16,
    period: &Period,
    settled: &[Settled],
    conditions: [u16; 2],
) -> Result<Table> {
    // The unit of each person with a settlement of the period.
    let mut unit_of: HashMap<u32, String> = HashMap::new();
    if let Some(claims) = &args.claims {
        let wanted = settled.iter().map(|s| s.claim_id.as_str()).collect();
        let institution = claim_column(claims, &wanted, "institution_id", true)?;
        let mut latest: HashMap<u32, (i64, &str)> = HashMap::new();
        for s in settled {
            if let Some(inst) = institution.get(s.claim_id.as_str()) {
                let e = latest.entry(s.person).or_insert((i64::MIN, ""));
                if (s.settled_at, inst.as_str()) >= (e.0, e.1) {
                    *e = (s.settled_at, inst.as_str());
                }
            }
        }
        unit_of = latest
            .into_iter()
            .map(|(p, (_, inst))| (p, inst.to_string()))
            .collect();
    }
    let whole_city = "鄂州市".to_string();
    let no_settlement = "（本期无两病结算）".to_string();
    // unit → [hypertension severe, normal, diabetes severe, normal]
    let mut counts: BTreeMap<&String, [u64; 4]> = BTreeMap::new();
    for p in 0..registry.persons.len() as u32 {
        if registry.persons[p as usize].region != region {
            continue;
        }
        let mut cells = [false; 4];
        for r in registry.registrations_of(p) {
            if r.approved_on > period.last || r.ended_on < period.last {
                continue;
            }
            for (d, &c) in conditions.iter().enumerate() {
                if r.condition == c {
                    let severe = r.severity == Severity::Severe;
                    cells[2 * d + usize::from(!severe)] = true;
                }
            }
        }
        if !cells.iter().any(|&c| c) {
            continue;
        }
        let unit = match (&args.claims, unit_of.get(&p)) {
            (None, _) => &whole_city,
            (Some(_), Some(u)) => u,
            (Some(_), None) => &no_settlement,
        };
        let e = counts.entry(unit).or_default();
        for (n, c) in e.iter_mut().zip(cells) {
            *n += u64::from(c);
        }
    }
    let header = vec![
        Heading::new(0, 0, 2, 1, "序号"),
        Heading::new(0, 1, 2, 1, "填报单位"),
        Heading::new(0, 2, 1, 3, "纳入“高血压“管理人员情况统计（人数）"),
        Heading::new(1, 2, 1, 1, "门诊重慢病"),
        Heading::new(1, 3, 1, 1, "普通高血压"),
        Heading::new(1, 4, 1, 1, "合计"),
        Heading::new(0, 5, 1, 3, "纳入“糖尿病“管理人员情况统计（人数）"),
        Heading::new(1, 5, 1, 1, "门诊重慢病"),
        Heading::new(1, 6, 1, 1, "普通糖尿病"),
        Heading::new(1, 7, 1, 1, "合计"),
        Heading::new(0, 8, 2, 1, "总计"),
    ];
    let cells = |n: [u64; 4]| -> Vec<Cell> {
        let (h, d) = (n[0] + n[1], n[2] + n[3]);
        [n[0], n[1], h, n[2], n[3], d, h + d]
            .into_iter()
            .map(Cell::Count)
            .collect()
    };
    let mut body = Vec::new();
    let mut total = [0u64; 4];
    for (i, (unit, n)) in counts.iter().enumerate() {
        let mut row = vec![Cell::Count(i as u64 + 1), Cell::Text((*unit).clone())];
        row.extend(cells(*n));
        body.push(row);
        for (t, x) in total.iter_mut().zip(n) {
            *t += x;
        }
    }
    let mut row = vec![Cell::Blank, Cell::Text("合计".into())];
    row.extend(cells(total));
    body.push(row);
    Ok(Table {
        sheet: "附件7".into(),
        title: "鄂州市参保人员“两病”情况统计表".into(),
        subtitle: format!("统计时点：{}末　　单位：人", period.label),
        header,
        header_rows: 2,
        body,
        footer: "填报单位：            填报人：         审核人：        填报日期：".into(),
    })
}

/// The text column `column` of the claims files, by claim id, for the claim ids of `wanted`
/// (non-null values only). A file without the column stops with its name unless the column is
/// nullable in the contract (`required` false): such a file has none of it.
pub(crate) fn claim_column(
    claims: &Path,
    wanted: &std::collections::HashSet<&str>,
    column: &str,
    required: bool,
) -> Result<HashMap<String, String>> {
    let mut out = HashMap::new();
    for path in crate::ingest::read::list_parquet(claims)? {
        let file = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
        let builder =
            ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| Error::parquet(&path, e))?;
        let fields = builder.parquet_schema().root_schema().get_fields();
        let root = |name: &str| {
            fields
                .iter()
                .position(|f| f.name() == name)
                .ok_or_else(|| Error::schema(&path, name, "missing"))
        };
        let values = match root(column) {
            Ok(at) => at,
            Err(_) if !required => continue,
            Err(e) => return Err(e),
        };
        let roots = vec![root("claim_id")?, values];
        let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
        let reader = builder
            .with_projection(mask)
            .build()
            .map_err(|e| Error::parquet(&path, e))?;
        for batch in reader {
            let batch = batch.map_err(|e| Error::corrupt(&path, e))?;
            let ids = utf8(&batch, "claim_id", &path)?;
            let values = utf8(&batch, column, &path)?;
            for i in 0..batch.num_rows() {
                if ids.is_valid(i) && values.is_valid(i) && wanted.contains(ids.value(i)) {
                    out.insert(ids.value(i).to_string(), values.value(i).to_string());
                }
            }
        }
    }
    Ok(out)
}

/// Jiaxing's quarterly two-diseases tables: residents and employees, a row per condition of the
/// programme (the two diseases and the eleven conditions joined to it), a total.
fn jiaxing(
    args: &ReportArgs,
    policies: &Policies,
    registry: &Registry,
    period: &Period,
) -> Result<(Vec<Table>, u64)> {
    let region = region_of(policies, JIAXING, "Jiaxing")?;
    let prefix = "chronic_outpatient.";
    let settled = read_settled(args, registry, region, period, &|b| b.starts_with(prefix))?;
    let mut rows: Vec<Option<BenefitRow>> = Vec::new();
    for (id, name) in CONDITION_NAMES {
        let Some(c) = policies.condition_id(id) else {
            continue;
        };
        rows.push(Some(BenefitRow {
            name: name.to_string(),
            labels: vec![format!("{prefix}{id}")],
            // Jiaxing's programme pays normal and severe registrations alike.
            registered: Some((c, None)),
        }));
    }
    rows.push(None);
    let persons = Persons::count(registry, region, period);
    let tables = scheme_tables(
        &[
            ("城乡居民季报", "城乡居民医保", Coverage::Resident),
            ("城镇职工季报", "城镇职工医保", Coverage::Employee),
        ],
        |scheme| format!("嘉兴市{scheme}“两病”门诊用药保障工作季度报表"),
        period,
        &rows,
        &settled,
        &persons,
    );
    Ok((tables, settled.len() as u64))
}

/// Builds the report's tables and writes `report.xlsx` and one CSV per table into `--out`.
pub fn report(args: &ReportArgs) -> Result<Written> {
    let (year, month_or_quarter, most) = match args.kind {
        ReportKind::EzhouMonthly { year, month } => (year, month, 12),
        ReportKind::JiaxingQuarterly { year, quarter } => (year, quarter, 4),
    };
    if !(1900..=9999).contains(&year) || !(1..=most).contains(&month_or_quarter) {
        return Err(Error::Usage(format!(
            "no such period: {year}, {month_or_quarter} (a year 1900–9999, a month 1–12 or a \
             quarter 1–4)"
        )));
    }
    let policies = Policies::load_dir(&args.policies)?;
    let registry = Registry::load(&args.persons, &args.registrations, &policies)?;
    let period = period(args.kind);
    let (tables, rows) = match args.kind {
        ReportKind::EzhouMonthly { .. } => ezhou(args, &policies, &registry, &period)?,
        ReportKind::JiaxingQuarterly { .. } => jiaxing(args, &policies, &registry, &period)?,
    };
    std::fs::create_dir_all(&args.out).map_err(|e| Error::io(&args.out, e))?;
    let mut csv = Vec::new();
    for t in &tables {
        let path = args.out.join(format!("{}.csv", t.sheet));
        crate::output::parquet::write_atomic(&path, table::csv(t).as_bytes())?;
        csv.push(path);
    }
    let workbook = args.out.join("report.xlsx");
    table::write_xlsx(&workbook, &tables)?;
    crate::output::parquet::sync_dir(&args.out)?;
    Ok(Written {
        workbook,
        csv,
        rows,
    })
}
