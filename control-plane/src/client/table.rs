//! Columns aligned for people: a header row, then rows, two spaces between
//! columns, the last column not padded. Every cell is escaped: names and
//! messages come from config files and proxies (see [`crate::escape`]).

use crate::escape::escape_control;

/// `header` and `rows` as lines of text, each ending in a newline.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| escape_control(c).into_owned()).collect())
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            text.push_str(cell);
            if i < last {
                let pad = widths
                    .get(i)
                    .copied()
                    .unwrap_or(0)
                    .saturating_sub(cell.chars().count())
                    + 2;
                text.push_str(&" ".repeat(pad));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_columns_and_escapes_cells() {
        let rows = vec![
            vec!["orders".to_owned(), "80/http".to_owned()],
            vec!["a\nb".to_owned(), "-".to_owned()],
        ];
        assert_eq!(
            render(&["NAME", "PORTS"], &rows),
            "NAME    PORTS\norders  80/http\na\\nb    -\n"
        );
    }
}
