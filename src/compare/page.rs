//! `compare.html`: the comparison as a page an analyst opens in any browser, with no network —
//! styles inline, charts drawn as inline SVG by plotters (its SVG backend, no font files: the
//! browser lays the text out). Drawn from the summary alone, so the page and `summary.json`
//! always tell the same story.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;

use super::{CompareSummary, OutlayRow};
use crate::error::{Error, Result};
use crate::money::{parse_scaled, round_div, Yuan};

/// Colours of the two worlds: baseline grey-blue, proposal orange.
const WORLD_COLOURS: [RGBColor; 2] = [RGBColor(0x4e, 0x79, 0xa7), RGBColor(0xf2, 0x8e, 0x2b)];
const WORLDS: [&str; 2] = ["baseline", "proposal"];

/// Rows of a chart of many groups (benefits): the largest, by the larger world.
const MOST_BARS: usize = 14;

/// Rows of the table of the groups whose fund payment moves most.
const MOST_MOVED: usize = 20;

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn fen(yuan: &str) -> i128 {
    // The summary's own exact strings: always two decimals.
    parse_scaled(yuan, 2).map_or(0, i128::from)
}

/// A change with its sign and, where the base is not zero, its share of the base.
fn change(base: i128, proposal: i128) -> String {
    let d = proposal - base;
    let sign = if d > 0 { "+" } else { "" };
    if base == 0 {
        format!("{sign}{}", Yuan(d))
    } else {
        // Per mille of the base's size, rounded half away from zero: a rise is a rise whatever
        // the base's sign.
        let permille = round_div(d * 1000, base.abs());
        let p = match permille.signum() {
            -1 => "-",
            1 => "+",
            _ => "",
        };
        let m = permille.unsigned_abs();
        format!("{sign}{} ({p}{}.{}%)", Yuan(d), m / 10, m % 10)
    }
}

fn chart_error(context: &str) -> impl Fn(String) -> Error + '_ {
    move |reason| Error::Chart {
        context: context.to_string(),
        reason,
    }
}

/// A horizontal bar chart of `rows` (label, baseline and proposal in fen): the two worlds side by
/// side per group, first group at the top. Pixel positions are the only floats.
fn world_bars(title: &str, rows: &[(String, [i128; 2])]) -> Result<String> {
    let err = chart_error(title);
    let n = rows.len().max(1);
    let label_width = rows
        .iter()
        .map(|(l, _)| l.chars().count())
        .max()
        .unwrap_or(4);
    let (width, height) = (760u32, 60 + 34 * n as u32);
    let to_yuan = |fen: i128| fen as f64 / 100.0;
    let top = rows
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .max()
        .unwrap_or(0)
        .max(1);
    let bottom = rows
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .min()
        .unwrap_or(0)
        .min(0);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
        // Three segments a group: baseline, proposal, a gap; the first group at the top.
        let segments = 3 * n;
        let mut chart = ChartBuilder::on(&root)
            .margin(8)
            .x_label_area_size(24)
            .y_label_area_size((label_width as u32 * 7 + 16).min(320))
            .build_cartesian_2d(
                to_yuan(bottom)..to_yuan(top) * 1.08,
                (0..segments).into_segmented(),
            )
            .map_err(|e| err(e.to_string()))?;
        let label_of = |v: &SegmentValue<usize>| match v {
            SegmentValue::CenterOf(k) if k % 3 == 1 && k / 3 < rows.len() => {
                rows[rows.len() - 1 - k / 3].0.clone()
            }
            _ => String::new(),
        };
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(segments)
            .y_label_formatter(&label_of)
            .x_labels(6)
            .x_label_formatter(&|v| format!("{v:.0}"))
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(|e| err(e.to_string()))?;
        for (w, colour) in WORLD_COLOURS.iter().enumerate() {
            // Group i (from the top) takes segments 3(n−1−i) + 1 − w: baseline above proposal.
            let bars = rows.iter().enumerate().map(|(i, (_, v))| {
                let at = 3 * (n - 1 - i) + 1 - w;
                Rectangle::new(
                    [
                        (0.0, SegmentValue::Exact(at)),
                        (to_yuan(v[w]), SegmentValue::Exact(at + 1)),
                    ],
                    colour.filled(),
                )
            });
            chart.draw_series(bars).map_err(|e| err(e.to_string()))?;
        }
        root.present().map_err(|e| err(e.to_string()))?;
    }
    Ok(svg)
}

/// Persons by the change in what they pay: one bar a bucket, savings green, rises red.
fn change_bars(title: &str, buckets: &[(String, u64)]) -> Result<String> {
    let err = chart_error(title);
    let n = buckets.len().max(1);
    let top = buckets.iter().map(|b| b.1).max().unwrap_or(0).max(1);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (760, 60 + 26 * n as u32)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
        let mut chart = ChartBuilder::on(&root)
            .margin(8)
            .x_label_area_size(24)
            .y_label_area_size(170)
            .build_cartesian_2d(0.0..top as f64 * 1.08, (0..n).into_segmented())
            .map_err(|e| err(e.to_string()))?;
        let label_of = |v: &SegmentValue<usize>| match v {
            SegmentValue::CenterOf(k) if *k < buckets.len() => buckets[n - 1 - k].0.clone(),
            _ => String::new(),
        };
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n)
            .y_label_formatter(&label_of)
            .x_labels(6)
            .x_label_formatter(&|v| format!("{v:.0}"))
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(|e| err(e.to_string()))?;
        let middle = n / 2;
        let bars = buckets.iter().enumerate().map(|(i, (_, persons))| {
            let colour = match i.cmp(&middle) {
                std::cmp::Ordering::Less => RGBColor(0x59, 0xa1, 0x4f),
                std::cmp::Ordering::Equal => RGBColor(0xba, 0xb0, 0xac),
                std::cmp::Ordering::Greater => RGBColor(0xe1, 0x57, 0x59),
            };
            let at = n - 1 - i;
            Rectangle::new(
                [
                    (0.0, SegmentValue::Exact(at)),
                    (*persons as f64, SegmentValue::Exact(at + 1)),
                ],
                colour.filled(),
            )
        });
        chart.draw_series(bars).map_err(|e| err(e.to_string()))?;
        root.present().map_err(|e| err(e.to_string()))?;
    }
    Ok(svg)
}

/// The outlay's fund payment in both worlds summed by one of its dimensions, in key order.
fn by<K: Ord>(outlay: &[OutlayRow], key: impl Fn(&OutlayRow) -> K) -> BTreeMap<K, [i128; 2]> {
    let mut groups: BTreeMap<K, [i128; 2]> = BTreeMap::new();
    for row in outlay {
        let g = groups.entry(key(row)).or_default();
        g[0] += fen(&row.fund_paid_baseline);
        g[1] += fen(&row.fund_paid_proposal);
    }
    groups
}

/// The page.
pub fn render(s: &CompareSummary) -> Result<String> {
    let region_names: BTreeMap<&str, &str> = s
        .baseline
        .policies
        .iter()
        .map(|p| (p.region.as_str(), p.name.as_str()))
        .collect();
    let region = |code: &str| match region_names.get(code) {
        Some(name) => format!("{name} {code}"),
        None => code.to_string(),
    };
    let outlay = &s.outlay;
    let by_region: Vec<_> = by(outlay, |r| region(&r.region)).into_iter().collect();
    let by_scheme: Vec<_> = by(outlay, |r| r.scheme.to_string()).into_iter().collect();
    let by_level: Vec<_> = by(outlay, |r| r.institution_level.clone())
        .into_iter()
        .collect();
    let mut by_benefit: Vec<_> = by(outlay, |r| r.benefit.clone().unwrap_or("(none)".into()))
        .into_iter()
        .collect();
    by_benefit.sort_by(|a, b| {
        b.1[0]
            .max(b.1[1])
            .cmp(&a.1[0].max(a.1[1]))
            .then(a.0.cmp(&b.0))
    });
    let hidden = by_benefit.len().saturating_sub(MOST_BARS);
    by_benefit.truncate(MOST_BARS);
    let buckets: Vec<(String, u64)> = s
        .persons
        .change_in_patient_pays
        .iter()
        .map(|b| (b.change.to_string(), b.persons))
        .collect();

    let mut html = String::new();
    let w = &mut html;
    let title = format!(
        "yibao compare: {} against {}",
        s.proposal.policies_dir, s.baseline.policies_dir
    );
    let _ = write!(
        w,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        escape(&title)
    );
    let state = match &s.state {
        Some(st) => format!(
            "against version {} of the state <code>{}</code>",
            st.read_version,
            escape(&st.dir)
        ),
        None => "on empty state".to_string(),
    };
    let _ = write!(
        w,
        "<h1>What the proposal would cost</h1>\n<p class=\"sub\">Proposal <code>{}</code> against \
         baseline <code>{}</code>: {} claims settled under both, {state}; {} settled \
         differently. Money in yuan; “change” is proposal − baseline.</p>\n",
        escape(&s.proposal.policies_dir),
        escape(&s.baseline.policies_dir),
        s.claims,
        s.claims_changed
    );

    let (b, p) = (&s.baseline.amounts, &s.proposal.amounts);
    w.push_str("<h2>Money</h2>\n<table>\n<tr><th></th><th>baseline</th><th>proposal</th><th>change</th></tr>\n");
    for (name, x, y) in [
        ("fund paid (basic pooled fund)", &b.fund_paid, &p.fund_paid),
        (
            "critical illness insurance paid",
            &b.critical_illness_paid,
            &p.critical_illness_paid,
        ),
        (
            "medical assistance paid",
            &b.assistance_paid,
            &p.assistance_paid,
        ),
        ("patients pay", &b.patient_pays, &p.patient_pays),
        (
            "over the annual caps",
            &b.over_cap_amount,
            &p.over_cap_amount,
        ),
    ] {
        let _ = writeln!(
            w,
            "<tr><td>{name}</td><td class=\"n\">{x}</td><td class=\"n\">{y}</td><td class=\"n\">{}</td></tr>",
            change(fen(x), fen(y))
        );
    }
    w.push_str("</table>\n");

    let ps = &s.persons;
    let _ = write!(
        w,
        "<h2>Persons</h2>\n<table>\n<tr><td>persons with a settled claim</td><td class=\"n\">{}</td></tr>\n\
         <tr><td>pay more under the proposal</td><td class=\"n\">{}</td></tr>\n\
         <tr><td>pay less</td><td class=\"n\">{}</td></tr>\n\
         <tr><td>pay the same</td><td class=\"n\">{}</td></tr>\n\
         <tr><td>newly reach an annual cap (a <code>capped</code> claim under the proposal only)</td><td class=\"n\">{}</td></tr>\n\
         <tr><td>no longer reach one</td><td class=\"n\">{}</td></tr>\n</table>\n",
        ps.persons, ps.pay_more, ps.pay_less, ps.pay_the_same, ps.newly_capped, ps.no_longer_capped
    );
    let figure = |w: &mut String, caption: &str, svg: String| {
        let _ = writeln!(
            w,
            "<figure class=\"chart\">{svg}<figcaption>{}</figcaption></figure>",
            escape(caption)
        );
    };
    // The worlds' colours, said once above their charts.
    let key: String = WORLDS
        .iter()
        .zip(WORLD_COLOURS)
        .map(|(name, c)| {
            format!(
                "<span class=\"key\" style=\"background:#{:02x}{:02x}{:02x}\"></span>{name} ",
                c.0, c.1, c.2
            )
        })
        .collect();
    figure(
        w,
        "Persons by the change in what they pay (yuan, proposal − baseline)",
        change_bars("persons by change", &buckets)?,
    );

    let _ = writeln!(w, "<h2>Fund outlay</h2>\n<p>{key}</p>");
    figure(
        w,
        "Fund paid by region",
        world_bars("by region", &by_region)?,
    );
    figure(
        w,
        "Fund paid by scheme",
        world_bars("by scheme", &by_scheme)?,
    );
    figure(
        w,
        "Fund paid by institution level",
        world_bars("by level", &by_level)?,
    );
    let benefits_caption = match hidden {
        0 => "Fund paid by benefit".to_string(),
        n => format!("Fund paid by benefit (the {MOST_BARS} largest; {n} more in summary.json)"),
    };
    figure(w, &benefits_caption, world_bars("by benefit", &by_benefit)?);

    let mut moved: Vec<&OutlayRow> = outlay.iter().collect();
    let moved_by = |r: &OutlayRow| (fen(&r.fund_paid_proposal) - fen(&r.fund_paid_baseline)).abs();
    moved.sort_by_key(|r| std::cmp::Reverse(moved_by(r)));
    moved.retain(|r| moved_by(r) > 0);
    moved.truncate(MOST_MOVED);
    let _ = write!(
        w,
        "<h2>Where the fund's payment moves</h2>\n<p>The groups of region, scheme, institution \
         level and benefit whose fund payment changes most ({} shown; every group is in \
         <code>summary.json</code>, <code>outlay</code>).</p>\n<table>\n<tr><th>region</th>\
         <th>scheme</th><th>level</th><th>benefit</th><th>claims</th><th>baseline</th>\
         <th>proposal</th><th>change</th></tr>\n",
        moved.len()
    );
    for r in &moved {
        let _ = writeln!(
            w,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            escape(&region(&r.region)),
            r.scheme,
            escape(&r.institution_level),
            escape(r.benefit.as_deref().unwrap_or("(none)")),
            r.claims_proposal,
            r.fund_paid_baseline,
            r.fund_paid_proposal,
            change(fen(&r.fund_paid_baseline), fen(&r.fund_paid_proposal))
        );
    }
    w.push_str("</table>\n");

    let _ = write!(
        w,
        "<h2>Policy numbers that differ</h2>\n<p>{} value(s), as written in the files, each with \
         its clause (the comment on its line, the file's <code>assumed</code> note, or the \
         comment above its table).</p>\n<table>\n<tr><th>file</th><th>where</th><th>key</th>\
         <th>baseline</th><th>proposal</th><th>clause</th></tr>\n",
        s.policy_changes.len()
    );
    for c in &s.policy_changes {
        let _ = writeln!(
            w,
            "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td><code>{}</code></td>\
             <td><code>{}</code></td><td>{}</td></tr>",
            escape(&c.file),
            escape(&c.place),
            escape(&c.key),
            escape(c.baseline.as_deref().unwrap_or("—")),
            escape(c.proposal.as_deref().unwrap_or("—")),
            escape(&c.clause)
        );
    }
    w.push_str("</table>\n");
    let _ = write!(
        w,
        "<p class=\"sub\">yibao {} · {} threads · {:.2} s</p>\n\
         <script>{SCRIPT}</script>\n</body>\n</html>\n",
        s.version, s.threads, s.wall_seconds
    );
    Ok(html)
}

const STYLE: &str = "body{font-family:sans-serif;max-width:960px;margin:2em auto;padding:0 1em;\
color:#222}h1{font-size:1.6em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}\
.sub{color:#666}table{border-collapse:collapse;margin:.5em 0}td,th{padding:.25em .6em;\
border-bottom:1px solid #eee;text-align:left;vertical-align:top}td.n{text-align:right;\
font-variant-numeric:tabular-nums}figure.chart{margin:1em 0}figcaption{color:#444;\
font-size:.9em}code{font-size:.92em}.key{display:inline-block;width:.9em;height:.9em;\
margin:0 .3em 0 .8em;vertical-align:-.1em}";

/// Marks on the page how many charts the browser laid out with a size, so that a headless
/// browser can confirm them.
const SCRIPT: &str = "document.body.dataset.chartsRendered=String(Array.from(\
document.querySelectorAll('figure.chart svg')).filter(function(s){var b=s.getBBox();\
return b.width>0&&b.height>0;}).length);";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_shows_its_sign_and_share() {
        assert_eq!(change(100_000, 110_000), "+100.00 (+10.0%)");
        assert_eq!(change(100_000, 90_000), "-100.00 (-10.0%)");
        assert_eq!(change(300, 301), "+0.01 (+0.3%)");
        assert_eq!(change(0, 250), "+2.50");
        assert_eq!(change(5_000, 5_000), "0.00 (0.0%)");
        // A negative base (refunds outweigh claims): a rise is still a rise.
        assert_eq!(change(-2_000, -1_900), "+1.00 (+5.0%)");
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            escape("<a href=\"x\">&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;"
        );
    }
}
