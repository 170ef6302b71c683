//! A statutory table as the documents lay it out — a title, a header of merged cells over one or
//! two rows, the body, a line for the signatures — and its two renderings: a sheet of an `.xlsx`
//! workbook (rust_xlsxwriter) and a CSV file with one header row.

use std::path::Path;

use rust_xlsxwriter::{Format, FormatAlign, FormatBorder, Workbook, Worksheet};

use crate::error::{Error, Result};
use crate::money::Yuan;

/// A body cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    Text(String),
    Count(u64),
    /// Money in fen, shown in yuan with two decimals.
    Money(i128),
    /// Left empty: a number the run cannot know (an operator fills it in).
    Blank,
}

/// A header cell at `(row, column)` of the header, spanning `rows` × `columns`.
#[derive(Debug, Clone)]
pub struct Heading {
    pub row: u16,
    pub column: u16,
    pub rows: u16,
    pub columns: u16,
    pub text: String,
}

impl Heading {
    pub fn new(row: u16, column: u16, rows: u16, columns: u16, text: &str) -> Heading {
        Heading {
            row,
            column,
            rows,
            columns,
            text: text.to_string(),
        }
    }
}

/// One table of a report: one sheet of the workbook, one CSV file.
#[derive(Debug, Clone)]
pub struct Table {
    /// The sheet's name (`附件4`) and the CSV file's stem.
    pub sheet: String,
    /// The document's title of the table.
    pub title: String,
    /// A line under the title: period and unit of the figures.
    pub subtitle: String,
    pub header: Vec<Heading>,
    pub header_rows: u16,
    pub body: Vec<Vec<Cell>>,
    /// The signature line under the table (`填报单位：… 填报人：…`), filled by hand.
    pub footer: String,
}

impl Table {
    pub fn columns(&self) -> u16 {
        self.header
            .iter()
            .map(|h| h.column + h.columns)
            .max()
            .unwrap_or(0)
    }

    /// Each column's name for a one-row header: its headings from the top, joined by `/`.
    pub fn column_names(&self) -> Vec<String> {
        (0..self.columns())
            .map(|c| {
                let mut over: Vec<&Heading> = self
                    .header
                    .iter()
                    .filter(|h| h.column <= c && c < h.column + h.columns)
                    .collect();
                over.sort_by_key(|h| h.row);
                over.iter()
                    .map(|h| h.text.as_str())
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .collect()
    }
}

fn xlsx_error(path: &Path) -> impl Fn(rust_xlsxwriter::XlsxError) -> Error + '_ {
    move |e| Error::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    }
}

fn sheet(sheet: &mut Worksheet, table: &Table, path: &Path) -> Result<()> {
    let err = xlsx_error(path);
    let columns = table.columns();
    let title = Format::new()
        .set_bold()
        .set_font_size(14)
        .set_align(FormatAlign::Center);
    let head = Format::new()
        .set_bold()
        .set_border(FormatBorder::Thin)
        .set_align(FormatAlign::Center)
        .set_align(FormatAlign::VerticalCenter)
        .set_text_wrap();
    let text = Format::new().set_border(FormatBorder::Thin);
    let count = Format::new()
        .set_border(FormatBorder::Thin)
        .set_num_format("0");
    let money = Format::new()
        .set_border(FormatBorder::Thin)
        .set_num_format("#,##0.00");
    sheet.set_name(&table.sheet).map_err(&err)?;
    let last = columns.saturating_sub(1);
    sheet
        .merge_range(0, 0, 0, last, &table.title, &title)
        .map_err(&err)?;
    sheet
        .merge_range(1, 0, 1, last, &table.subtitle, &Format::new())
        .map_err(&err)?;
    let top = 2u32;
    for h in &table.header {
        let (r, c) = (top + u32::from(h.row), h.column);
        if h.rows == 1 && h.columns == 1 {
            sheet
                .write_string_with_format(r, c, &h.text, &head)
                .map_err(&err)?;
        } else {
            sheet
                .merge_range(
                    r,
                    c,
                    r + u32::from(h.rows) - 1,
                    c + h.columns - 1,
                    &h.text,
                    &head,
                )
                .map_err(&err)?;
        }
    }
    let first = top + u32::from(table.header_rows);
    for (i, row) in table.body.iter().enumerate() {
        let r = first + i as u32;
        for (c, cell) in row.iter().enumerate() {
            let c = c as u16;
            match cell {
                Cell::Text(t) => sheet.write_string_with_format(r, c, t, &text),
                // Counts and money are numbers in the sheet (Excel's own sums work on them);
                // f64 holds every count and every fen amount below 2^53 exactly.
                Cell::Count(n) => sheet.write_number_with_format(r, c, *n as f64, &count),
                Cell::Money(fen) => {
                    let yuan: f64 = Yuan(*fen).to_string().parse().unwrap_or(0.0);
                    sheet.write_number_with_format(r, c, yuan, &money)
                }
                Cell::Blank => sheet.write_blank(r, c, &text),
            }
            .map_err(&err)?;
        }
    }
    let end = first + table.body.len() as u32 + 1;
    sheet.write_string(end, 0, &table.footer).map_err(&err)?;
    sheet.set_column_width(0, 16).map_err(&err)?;
    for c in 1..columns {
        sheet.set_column_width(c, 12).map_err(&err)?;
    }
    Ok(())
}

/// Writes `tables` as the sheets of one workbook at `path`.
pub fn write_xlsx(path: &Path, tables: &[Table]) -> Result<()> {
    let err = xlsx_error(path);
    let mut book = Workbook::new();
    for table in tables {
        sheet(book.add_worksheet(), table, path)?;
    }
    let bytes = book.save_to_buffer().map_err(&err)?;
    crate::output::parquet::write_atomic(path, &bytes)
}

/// A CSV field: quoted when it holds a comma, a quote or a line break.
pub(crate) fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// The table as CSV (UTF-8 with a byte-order mark, so that Excel reads the Chinese headers):
/// one header row of [`Table::column_names`], money in yuan with two decimals, blanks empty.
pub fn csv(table: &Table) -> String {
    let mut out = String::from("\u{feff}");
    let names: Vec<String> = table.column_names().iter().map(|n| csv_field(n)).collect();
    out.push_str(&names.join(","));
    out.push('\n');
    for row in &table.body {
        let fields: Vec<String> = row
            .iter()
            .map(|cell| match cell {
                Cell::Text(t) => csv_field(t),
                Cell::Count(n) => n.to_string(),
                Cell::Money(fen) => Yuan(*fen).to_string(),
                Cell::Blank => String::new(),
            })
            .collect();
        out.push_str(&fields.join(","));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_two_row_header_names_each_column_from_the_top() {
        let table = Table {
            sheet: "附件4".into(),
            title: "t".into(),
            subtitle: String::new(),
            header: vec![
                Heading::new(0, 0, 2, 1, "疾病病种"),
                Heading::new(0, 1, 1, 2, "一级及以下医疗机构"),
                Heading::new(1, 1, 1, 1, "医疗费"),
                Heading::new(1, 2, 1, 1, "报销额"),
            ],
            header_rows: 2,
            body: vec![vec![
                Cell::Text("普通高血压".into()),
                Cell::Money(12345),
                Cell::Blank,
            ]],
            footer: String::new(),
        };
        assert_eq!(
            table.column_names(),
            [
                "疾病病种",
                "一级及以下医疗机构/医疗费",
                "一级及以下医疗机构/报销额"
            ]
        );
        assert_eq!(
            csv(&table),
            "\u{feff}疾病病种,一级及以下医疗机构/医疗费,一级及以下医疗机构/报销额\n普通高血压,123.45,\n"
        );
    }
}
