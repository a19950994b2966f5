//! Tables of already formatted cells, as plain text (aligned columns) and as GitHub Markdown.

use std::fmt::Write as _;

/// Left-aligned columns separated by two spaces, a header line first.
pub(crate) fn text_table<const N: usize>(headers: &[&str; N], rows: &[[String; N]]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (c, w) in cells.iter().zip(&widths) {
            let _ = write!(l, "{c}{}  ", " ".repeat(w - c.chars().count()));
        }
        l.trim_end().to_string() + "\n"
    };
    let mut out = line(headers.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

/// A Markdown table; `|` in a cell is escaped.
pub(crate) fn markdown_table<const N: usize>(headers: &[&str; N], rows: &[[String; N]]) -> String {
    let mut out = format!("| {} |\n|{}\n", headers.join(" | "), " --- |".repeat(N));
    for r in rows {
        let cells: Vec<String> = r.iter().map(|c| c.replace('|', "\\|")).collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    out
}
