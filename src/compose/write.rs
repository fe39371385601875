//! Writing the imported configuration as TOML, with a comment on every line that names the
//! Compose line it came from.
//!
//! The layout is gantry's own (fixed key order, sorted maps), so the same Compose file
//! always gives the same bytes. The writer is small and by hand rather than through a TOML
//! editing crate: every value is a string, a number, a boolean, a list or an inline table
//! of those, and the comments go exactly where the import wants them.

use std::fmt::Write as _;
use std::ops::Range;

/// A TOML value the import writes.
#[derive(Debug, Clone, PartialEq)]
pub enum TVal {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    List(Vec<TVal>),
    /// An inline table, keys in the order given.
    Inline(Vec<(String, TVal)>),
}

/// One `key = value` line.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: String,
    pub value: TVal,
    /// The Compose line it comes from (0: none).
    pub line: usize,
    /// The Compose key it comes from (`services.web.deploy.replicas`), for reports.
    pub source_key: String,
    /// Comment lines written above the entry.
    pub notes: Vec<String>,
}

/// A `[header]` and its entries.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub header: String,
    pub line: usize,
    /// Written after the header, before the entries.
    pub notes: Vec<String>,
    pub entries: Vec<Entry>,
    /// Comment lines written after the entries (what could not be mapped here).
    pub trailer: Vec<String>,
}

/// The whole file.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Doc {
    pub head: Vec<String>,
    pub tables: Vec<Table>,
}

/// Where an entry was written: (table index, entry index) for each line range.
pub type Positions = Vec<(Range<usize>, (usize, usize))>;

/// Renders `doc`; comments name `file:line`.
pub fn render(doc: &Doc, file: &str) -> (String, Positions) {
    let mut out = String::new();
    let mut positions = Vec::new();
    for line in &doc.head {
        comment(&mut out, line);
    }
    for (ti, table) in doc.tables.iter().enumerate() {
        if !out.is_empty() {
            out.push('\n');
        }
        let _ = write!(out, "[{}]", table.header);
        if table.line > 0 {
            let _ = write!(out, "  # {file}:{}", table.line);
        }
        out.push('\n');
        for n in &table.notes {
            comment(&mut out, n);
        }
        for (ei, e) in table.entries.iter().enumerate() {
            for n in &e.notes {
                comment(&mut out, n);
            }
            let start = out.len();
            let _ = write!(out, "{} = {}", key(&e.key), value(&e.value));
            if e.line > 0 {
                let _ = write!(out, "  # {file}:{}", e.line);
            }
            positions.push((start..out.len(), (ti, ei)));
            out.push('\n');
        }
        for n in &table.trailer {
            comment(&mut out, n);
        }
    }
    (out, positions)
}

fn comment(out: &mut String, text: &str) {
    for line in text.lines() {
        if line.is_empty() {
            out.push_str("#\n");
        } else {
            let _ = writeln!(out, "# {line}");
        }
    }
}

/// A key, bare when TOML allows it.
pub fn key(k: &str) -> String {
    let bare = !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare { k.to_string() } else { string(k) }
}

/// A TOML basic string.
pub fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub fn value(v: &TVal) -> String {
    match v {
        TVal::Str(s) => string(s),
        TVal::Int(n) => n.to_string(),
        TVal::Float(f) => {
            let s = f.to_string();
            if s.contains(['.', 'e', 'E']) || !f.is_finite() {
                s
            } else {
                format!("{s}.0")
            }
        }
        TVal::Bool(b) => b.to_string(),
        TVal::List(items) => {
            let items: Vec<String> = items.iter().map(value).collect();
            format!("[{}]", items.join(", "))
        }
        TVal::Inline(entries) => {
            if entries.is_empty() {
                return "{}".to_string();
            }
            let items: Vec<String> = entries
                .iter()
                .map(|(k, v)| format!("{} = {}", key(k), value(v)))
                .collect();
            format!("{{ {} }}", items.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_and_keys_are_quoted_as_toml_wants() {
        assert_eq!(string("a\"b\\c\n"), r#""a\"b\\c\n""#);
        assert_eq!(key("DD_ENV"), "DD_ENV");
        assert_eq!(key("com.datadoghq.tags.env"), "\"com.datadoghq.tags.env\"");
        assert_eq!(value(&TVal::Float(1.0)), "1.0");
        assert_eq!(value(&TVal::Float(0.5)), "0.5");
        let inline = TVal::Inline(vec![
            ("cpus".into(), TVal::Float(1.5)),
            ("memory".into(), TVal::Str("1000M".into())),
        ]);
        assert_eq!(value(&inline), r#"{ cpus = 1.5, memory = "1000M" }"#);
    }

    #[test]
    fn entries_carry_their_source_line() {
        let doc = Doc {
            head: vec!["imported".into()],
            tables: vec![Table {
                header: "service.web".into(),
                line: 3,
                notes: vec![],
                entries: vec![Entry {
                    key: "replicas".into(),
                    value: TVal::Int(3),
                    line: 7,
                    source_key: "services.web.deploy.replicas".into(),
                    notes: vec!["from deploy".into()],
                }],
                trailer: vec!["not mapped: x".into()],
            }],
        };
        let (text, pos) = render(&doc, "compose.yaml");
        assert_eq!(
            text,
            "# imported\n\n[service.web]  # compose.yaml:3\n# from deploy\nreplicas = 3  # compose.yaml:7\n# not mapped: x\n"
        );
        assert_eq!(&text[pos[0].0.clone()], "replicas = 3  # compose.yaml:7");
    }
}
