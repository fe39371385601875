//! Diagnostics: problems found in the user's input, collected rather than thrown.
//!
//! The core (config, model, graph) produces `Diagnostic`s with byte spans into the config
//! source; `render_diagnostics` turns them into `file:line:col` headlines followed by a
//! miette snippet of the offending line. A span-less diagnostic is about the file as a whole.

use std::fmt::Write as _;
use std::ops::Range;

use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource};

/// One problem in the configuration (or in a file it names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub message: String,
    /// Byte range in the config source.
    pub span: Option<Range<usize>>,
    /// Short text under the caret.
    pub label: Option<String>,
    pub help: Option<String>,
    /// Other places worth pointing at (the first definition of a duplicate, ...).
    pub related: Vec<(Range<usize>, String)>,
}

impl Diagnostic {
    pub fn new(message: impl Into<String>) -> Self {
        Diagnostic {
            message: message.into(),
            span: None,
            label: None,
            help: None,
            related: Vec::new(),
        }
    }

    pub fn at(message: impl Into<String>, span: Range<usize>) -> Self {
        Diagnostic {
            span: Some(span),
            ..Diagnostic::new(message)
        }
    }

    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn related(mut self, span: Range<usize>, label: impl Into<String>) -> Self {
        self.related.push((span, label.into()));
        self
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = &source[..floor_char_boundary(source, offset)];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The suggestion for a misspelt name: the closest candidate, if it is close enough.
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(name, c), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0).then_with(|| b.1.cmp(a.1)))
        .map(|(_, c)| c)
}

/// "`a`, `b` and `c`" for messages.
pub fn list_names<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    let names: Vec<String> = names.into_iter().map(|n| format!("`{n}`")).collect();
    match names.len() {
        0 => "none".to_string(),
        1 => names[0].clone(),
        n => format!("{} and {}", names[..n - 1].join(", "), names[n - 1]),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
struct MietteDiag {
    message: String,
    src: NamedSource<String>,
    labels: Vec<LabeledSpan>,
    help: Option<String>,
}

impl miette::Diagnostic for MietteDiag {
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(&self.src)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        Some(Box::new(self.labels.iter().cloned()))
    }
    fn help<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn std::fmt::Display>)
    }
}

/// Renders every diagnostic as `error: FILE:LINE:COL: MESSAGE` followed by the offending
/// line(s) with carets. Colour is decided by the caller (ANSI codes are stripped later
/// when the output is not a terminal).
pub fn render_diagnostics(file: &str, source: &str, diags: &[Diagnostic], color: bool) -> String {
    let theme = if color {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let handler = GraphicalReportHandler::new_themed(theme)
        .with_context_lines(1)
        .with_width(100)
        .without_cause_chain();
    let mut out = String::new();
    for d in diags {
        match &d.span {
            Some(span) => {
                let (line, col) = line_col(source, span.start);
                let _ = writeln!(out, "error: {file}:{line}:{col}: {}", d.message);
                let mut labels = vec![LabeledSpan::new_primary_with_span(
                    d.label.clone(),
                    clamp(span, source.len()),
                )];
                labels.extend(d.related.iter().map(|(s, l)| {
                    LabeledSpan::new_with_span(Some(l.clone()), clamp(s, source.len()))
                }));
                let report = MietteDiag {
                    message: d.message.clone(),
                    src: NamedSource::new(file, source.to_string()),
                    labels,
                    help: d.help.clone(),
                };
                // miette repeats the message as its first line(s); the headline above
                // already says it, so keep only the snippet and the help.
                let mut snippet = String::new();
                let _ = handler.render_report(&mut snippet, &report);
                let mut lines = snippet.lines().skip_while(|l| !l.contains("╭─["));
                for line in lines.by_ref() {
                    out.push_str(line);
                    out.push('\n');
                }
            }
            None => {
                let _ = writeln!(out, "error: {file}: {}", d.message);
                if let Some(help) = &d.help {
                    let _ = writeln!(out, "  help: {help}");
                }
            }
        }
        out.push('\n');
    }
    out
}

fn clamp(span: &Range<usize>, len: usize) -> Range<usize> {
    let start = span.start.min(len);
    let end = span.end.clamp(start, len);
    start..end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one_in_characters() {
        let src = "a = 1\nbé = \"x\"\n";
        assert_eq!(line_col(src, 0), (1, 1));
        assert_eq!(line_col(src, 6), (2, 1));
        assert_eq!(line_col(src, src.find('=').unwrap()), (1, 3));
        let second_eq = src.rfind('=').unwrap();
        assert_eq!(line_col(src, second_eq), (2, 4));
    }

    #[test]
    fn closest_suggests_only_near_names() {
        assert_eq!(closest("graphq", ["cache", "graphql"]), Some("graphql"));
        assert_eq!(closest("zzz", ["cache", "graphql"]), None);
    }
}
