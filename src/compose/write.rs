//! Writing the imported configuration as TOML, with a comment on every line that names the
//! Compose line it came from.
//!
//! The layout is gantry's own (fixed key order, sorted maps), so the same Compose file
//! always gives the same bytes. The layout (headers, comments naming the Compose line) is
//! written here, since the comments go exactly where the import wants them; the quoting of
//! keys and values is `toml_writer`'s (the formatting half of the `toml` crate).

use std::fmt::Write as _;
use std::ops::Range;

use toml_writer::{
    ToTomlKey as _, ToTomlValue as _, TomlKeyBuilder, TomlStringBuilder, TomlWrite, WriteTomlValue,
};

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
    /// Its column on that line (0: none), for the report.
    pub column: usize,
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
    let file = &comment_text(file);
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
            let _ = writeln!(out, "# {}", comment_text(line));
        }
    }
}

/// Text as a TOML comment may hold it: TOML refuses control characters (but tab) in
/// comments, and a Compose value in a note (`placeholder: "a\rb" is not an image`) or a
/// file name may carry some. They are written escaped, as Rust writes them. The text report
/// uses it too, so that no Compose value sends escape sequences to the terminal.
pub fn comment_text(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() && c != '\t' {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// A key, bare when TOML allows it, else a basic string.
pub fn key(k: &str) -> String {
    let builder = TomlKeyBuilder::new(k);
    builder
        .as_unquoted()
        .unwrap_or_else(|| builder.as_basic())
        .to_toml_key()
}

/// A TOML basic string (`"..."`, one line, escapes where TOML needs them).
pub fn string(s: &str) -> String {
    TomlStringBuilder::new(s).as_basic().to_toml_value()
}

pub fn value(v: &TVal) -> String {
    v.to_toml_value()
}

/// The quoting is `toml_writer`'s; only the choice of form (basic strings, bare keys where
/// allowed, `{ k = v }` inline tables) is ours, so the output stays one line per entry.
impl WriteTomlValue for TVal {
    fn write_toml_value<W: TomlWrite + ?Sized>(&self, w: &mut W) -> std::fmt::Result {
        match self {
            TVal::Str(s) => w.value(TomlStringBuilder::new(s).as_basic()),
            TVal::Int(n) => w.value(*n),
            // A NaN's sign bit is indeterminate; write it as plain `nan`.
            TVal::Float(f) if f.is_nan() => w.value(f64::NAN.copysign(1.0)),
            TVal::Float(f) => w.value(*f),
            TVal::Bool(b) => w.value(*b),
            TVal::List(items) => w.value(items.as_slice()),
            TVal::Inline(entries) => {
                w.open_inline_table()?;
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        w.val_sep()?;
                    }
                    w.space()?;
                    let builder = TomlKeyBuilder::new(k);
                    w.key(builder.as_unquoted().unwrap_or_else(|| builder.as_basic()))?;
                    w.space()?;
                    w.keyval_sep()?;
                    w.space()?;
                    w.value(v)?;
                }
                if !entries.is_empty() {
                    w.space()?;
                }
                w.close_inline_table()
            }
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

    /// Whatever the Compose file holds, the written line parses back to the same value:
    /// quotes, backslashes, control characters, odd keys, and floats TOML spells its own way
    /// (`NaN` from `f64`'s `Display` is not TOML; `nan` is).
    #[test]
    fn written_values_parse_back_to_what_was_written() {
        let odd = "q\"b\\ \u{7}\u{8}\u{c}\u{1b}\u{7f}\u{85} é\n\ttab 'x' \"\"\"";
        let inline = TVal::Inline(vec![
            (odd.into(), TVal::Str(odd.into())),
            (
                "".into(),
                TVal::List(vec![TVal::Float(f64::INFINITY), TVal::Int(-3)]),
            ),
        ]);
        for (k, v) in [
            ("plain", TVal::Str(odd.into())),
            (odd, TVal::Bool(true)),
            ("nan", TVal::Float(f64::NAN)),
            ("neg", TVal::Float(-f64::NAN)),
            ("inf", TVal::Float(f64::NEG_INFINITY)),
            ("big", TVal::Float(1e300)),
            ("t", inline),
        ] {
            let line = format!("{} = {}", key(k), value(&v));
            assert!(!line.contains('\n'), "one line: {line}");
            let parsed: toml::Table =
                toml::from_str(&line).unwrap_or_else(|e| panic!("{line}: {e}"));
            let got = &parsed[k];
            match &v {
                TVal::Str(s) => assert_eq!(got.as_str(), Some(s.as_str())),
                TVal::Float(f) if f.is_nan() => assert!(got.as_float().unwrap().is_nan()),
                TVal::Float(f) => assert_eq!(got.as_float(), Some(*f)),
                TVal::Inline(_) => {
                    assert_eq!(got[odd].as_str(), Some(odd));
                    assert_eq!(got[""][1].as_integer(), Some(-3));
                }
                _ => {}
            }
        }
    }

    /// Comments carry Compose text (notes, the file name); TOML refuses control characters
    /// in comments, so the written file must still parse.
    #[test]
    fn control_characters_in_notes_and_file_names_keep_the_file_parseable() {
        let doc = Doc {
            head: vec!["from \u{7}bell".into()],
            tables: vec![Table {
                header: "service.web".into(),
                line: 1,
                notes: vec!["a\rb".into()],
                entries: vec![Entry {
                    key: "image".into(),
                    value: TVal::Str("x".into()),
                    line: 2,
                    column: 5,
                    source_key: "services.web.image".into(),
                    notes: vec!["placeholder: `a\u{1b}[31m` is not an image reference".into()],
                }],
                trailer: vec!["not mapped: \u{7f}".into()],
            }],
        };
        let (text, _) = render(&doc, "odd\rname.yaml");
        let parsed: toml::Table = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text:?}"));
        assert_eq!(parsed["service"]["web"]["image"].as_str(), Some("x"));
        assert!(text.contains("# a\\rb\n"), "{text:?}");
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
                    column: 5,
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
