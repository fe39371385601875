//! Reading `gantry.toml` into raw [`types`] without losing a single error.
//!
//! serde stops at the first error of a value, so the file is parsed once into a spanned
//! tree and every resource (`[project]`, each `[[host]]`, `[service.X]`, `[lb.X]`) is
//! deserialized on its own. When one fails, the failing entry is set aside and the resource
//! is tried again, so that a typo in `health` and a wrong type in `rollout` are both
//! reported in the same run, each at its own `line:col`.

pub mod types;

use std::cell::OnceCell;
use std::ops::Range;

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use crate::diag::{Diagnostic, closest, list_names};
pub use types::*;

/// A resource's name as written, with where it was written.
#[derive(Debug, Clone)]
pub struct Named<T> {
    pub name: String,
    pub span: Range<usize>,
    /// `None` when the resource could not be read at all. Its problems are in the
    /// diagnostics, and references to it are still valid (no cascade of "does not exist").
    /// A resource with some broken entries holds what could be read of it.
    pub value: Option<T>,
    /// Some entries were set aside as broken: checks for missing keys would only repeat
    /// those errors, so they are skipped.
    pub partial: bool,
}

/// Everything read from the file, plus what went wrong while reading it.
#[derive(Debug, Default)]
pub struct RawConfig {
    pub project: Option<TomlProject>,
    pub hosts: Vec<TomlHost>,
    pub services: Vec<Named<TomlService>>,
    pub lbs: Vec<Named<TomlLb>>,
    pub tasks: Vec<Named<TomlTask>>,
    pub diagnostics: Vec<Diagnostic>,
    /// `[hooks]`, when present and readable.
    pub hooks: Option<TomlHooks>,
    /// `[registry."HOST"]` entries, by registry host.
    pub registries: Vec<Named<TomlRegistry>>,
    /// `[state]`, when present and readable.
    pub state: Option<TomlState>,
}

const TOP_LEVEL_KEYS: [&str; 8] = [
    "project", "host", "service", "lb", "task", "hooks", "registry", "state",
];

/// Parses the configuration source. Never panics; problems become diagnostics.
pub fn parse(source: &str) -> RawConfig {
    let mut raw = RawConfig::default();
    let (doc, errors) = DeTable::parse_recoverable(source);
    if !errors.is_empty() {
        raw.diagnostics = errors.iter().map(syntax_diagnostic).collect();
        return raw;
    }
    let reader = Reader {
        source,
        fresh: OnceCell::new(),
    };
    let doc_span = doc.span();
    let mut saw_project = false;
    for (key, value) in doc.into_inner() {
        let key_span = key.span();
        match key.get_ref().as_ref() {
            "project" => {
                saw_project = true;
                raw.project = reader.read(value, &["project"], &mut raw.diagnostics);
            }
            "host" => {
                let span = value.span();
                match value.into_inner() {
                    DeValue::Array(items) => {
                        for (i, item) in items.into_iter().enumerate() {
                            let path = ["host".to_string(), i.to_string()];
                            let path: Vec<&str> = path.iter().map(String::as_str).collect();
                            if let Some(h) = reader.read(item, &path, &mut raw.diagnostics) {
                                raw.hosts.push(h);
                            }
                        }
                    }
                    other => raw.diagnostics.push(
                        Diagnostic::at(
                            format!(
                                "`host` must be an array of tables, found {}",
                                other.type_str()
                            ),
                            span,
                        )
                        .help("declare each host with a `[[host]]` header"),
                    ),
                }
            }
            section @ ("service" | "lb" | "task" | "registry") => {
                let span = value.span();
                let DeValue::Table(table) = value.into_inner() else {
                    raw.diagnostics.push(
                        Diagnostic::at(
                            format!("`{section}` must be a table of named entries"),
                            span,
                        )
                        .help(format!("declare each one as `[{section}.NAME]`")),
                    );
                    continue;
                };
                for (name, value) in table {
                    let span = name.span();
                    let name = name.into_inner().into_owned();
                    let diags = &mut raw.diagnostics;
                    match section {
                        "service" => raw
                            .services
                            .push(reader.named(section, name, span, value, diags)),
                        "registry" => raw
                            .registries
                            .push(reader.named(section, name, span, value, diags)),
                        "task" => raw
                            .tasks
                            .push(reader.named(section, name, span, value, diags)),
                        _ => raw
                            .lbs
                            .push(reader.named(section, name, span, value, diags)),
                    }
                }
            }
            "hooks" => raw.hooks = reader.read(value, &["hooks"], &mut raw.diagnostics),
            "state" => raw.state = reader.read(value, &["state"], &mut raw.diagnostics),
            other => raw
                .diagnostics
                .push(unknown_key(other, key_span, &TOP_LEVEL_KEYS)),
        }
    }
    if !saw_project {
        raw.diagnostics.push(
            Diagnostic::at("missing `[project]` table", doc_span.start..doc_span.start)
                .help("add `[project]` with `name = \"...\"` at the top of the file"),
        );
    }
    raw
}

struct Reader<'s> {
    source: &'s str,
    /// A second copy of the document, parsed only when some resource fails, so that the
    /// failing resource can be re-read without cloning every resource on the happy path.
    fresh: OnceCell<Spanned<DeTable<'s>>>,
}

impl<'s> Reader<'s> {
    /// A named resource (`[service.NAME]`, ...): what could be read of it, and whether some
    /// of its entries were set aside as broken.
    fn named<T: DeserializeOwned>(
        &self,
        section: &str,
        name: String,
        span: Range<usize>,
        value: Spanned<DeValue<'s>>,
        diags: &mut Vec<Diagnostic>,
    ) -> Named<T> {
        let before = diags.len();
        let value = self.read(value, &[section, name.as_str()], diags);
        Named {
            name,
            span,
            value,
            partial: diags.len() > before,
        }
    }

    fn read<T: DeserializeOwned>(
        &self,
        value: Spanned<DeValue<'s>>,
        path: &[&str],
        diags: &mut Vec<Diagnostic>,
    ) -> Option<T> {
        match T::deserialize(ValueDeserializer::from(value)) {
            Ok(v) => Some(v),
            Err(_) => self.collect_all_errors::<T>(path, diags),
        }
    }

    /// Re-reads the resource at `path` over and over, each time removing the entry that
    /// caused the last error, until it reads or no entry can be blamed. What finally reads
    /// (the resource without its broken entries) is returned, so that the semantic checks
    /// can still report the problems of the rest of it in the same run.
    fn collect_all_errors<T: DeserializeOwned>(
        &self,
        path: &[&str],
        diags: &mut Vec<Diagnostic>,
    ) -> Option<T> {
        let doc = self
            .fresh
            .get_or_init(|| DeTable::parse_recoverable(self.source).0);
        let mut value = lookup(doc, path)?;
        let mut removed: Vec<String> = Vec::new();
        // Each round removes one entry, so the loop is bounded by the entries of the value.
        loop {
            let err = match T::deserialize(ValueDeserializer::from(value.clone())) {
                Ok(v) => return Some(v),
                Err(err) => err,
            };
            let message = err.message().to_string();
            if let Some(field) = missing_field(&message)
                && removed.iter().any(|r| r == field)
            {
                return None; // caused by our own removal, already reported
            }
            let span = err.span().unwrap_or_else(|| value.span());
            diags.push(toml_error_diagnostic(&message, span.clone()));
            if missing_field(&message).is_some() {
                return None;
            }
            removed.push(remove_innermost(&mut value, &span)?);
        }
    }
}

fn lookup<'s>(doc: &Spanned<DeTable<'s>>, path: &[&str]) -> Option<Spanned<DeValue<'s>>> {
    let (first, rest) = path.split_first()?;
    let mut current = doc.get_ref().get(*first)?.clone();
    for part in rest {
        current = match current.into_inner() {
            DeValue::Table(t) => t.get(*part)?.clone(),
            DeValue::Array(a) => a.get(part.parse::<usize>().ok()?)?.clone(),
            _ => return None,
        };
    }
    Some(current)
}

/// Removes the deepest table entry whose key or value contains `span`; returns its key.
/// Tables declared with a `[header]` do not always carry a span around their contents, so
/// nested tables are searched first, whatever their own span says.
fn remove_innermost(value: &mut Spanned<DeValue<'_>>, span: &Range<usize>) -> Option<String> {
    let contains = |outer: Range<usize>| outer.start <= span.start && span.end <= outer.end;
    match value.get_mut() {
        DeValue::Table(table) => {
            let keys: Vec<_> = table.keys().cloned().collect();
            for key in &keys {
                if contains(key.span()) {
                    continue;
                }
                let child = table.get_mut(key.get_ref().as_ref())?;
                if (child.get_ref().is_table() || child.get_ref().is_array())
                    && let Some(inner) = remove_innermost(child, span)
                {
                    return Some(inner);
                }
            }
            let key = keys.into_iter().find(|k| {
                contains(k.span())
                    || table
                        .get(k.get_ref().as_ref())
                        .is_some_and(|v| contains(v.span()))
            })?;
            table.remove(key.get_ref().as_ref());
            Some(key.into_inner().into_owned())
        }
        DeValue::Array(items) => items.iter_mut().find_map(|v| remove_innermost(v, span)),
        _ => None,
    }
}

fn missing_field(message: &str) -> Option<&str> {
    message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
}

fn syntax_diagnostic(err: &toml::de::Error) -> Diagnostic {
    let message = err.message().trim().to_string();
    let mut d = Diagnostic::new(format!("invalid TOML: {message}"));
    d.span = err.span();
    d.label = Some("here".into());
    d
}

/// Rewrites serde's messages into the user's vocabulary (keys, not fields) with a suggestion.
fn toml_error_diagnostic(message: &str, span: Range<usize>) -> Diagnostic {
    let message = message.trim();
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let name = rest.split('`').next().unwrap_or_default();
        let expected: Vec<&str> = rest
            .split_once("expected")
            .map(|(_, list)| list.split('`').skip(1).step_by(2).collect())
            .unwrap_or_default();
        return unknown_key(name, span, &expected);
    }
    if let Some(rest) = message.strip_prefix("unknown variant `") {
        let name = rest.split('`').next().unwrap_or_default();
        return Diagnostic::at(format!("unknown value `{name}`"), span)
            .label("not allowed here")
            .help(message.to_string());
    }
    if let Some(field) = missing_field(message) {
        return Diagnostic::at(format!("missing required key `{field}`"), span)
            .label(format!("`{field}` is required in this table"));
    }
    if message.contains("untagged enum TomlPorts") {
        return Diagnostic::at(
            "wrong type: `host_ports` is one port or a range of ports",
            span,
        )
        .label("here")
        .help("write one port as a number (`host_ports = 18080`) or an inclusive range as a string (`host_ports = \"18080-18089\"`)");
    }
    let d = Diagnostic::at(message.replace("invalid type: ", "wrong type: "), span).label("here");
    if message.contains("a ulimit") {
        return d
            .help("e.g. `ulimits = { nofile = { soft = 20000, hard = 40000 }, nproc = 65535 }`");
    }
    d
}

fn unknown_key(name: &str, span: Range<usize>, expected: &[&str]) -> Diagnostic {
    let mut d = Diagnostic::at(format!("unknown key `{name}`"), span).label("not a known key");
    d.help = Some(match closest(name, expected.iter().copied()) {
        Some(best) => format!(
            "did you mean `{best}`? (known keys: {})",
            list_names(expected.iter().copied())
        ),
        None => format!("known keys here: {}", list_names(expected.iter().copied())),
    });
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_every_bad_key_of_one_service_at_once() {
        let src = r#"
[project]
name = "p"

[service.api]
image = "app:1"
replica = 3
port = "eighty"

[service.api.health]
htp = "/healthz"
"#;
        let raw = parse(src);
        let messages: Vec<&str> = raw.diagnostics.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(raw.diagnostics.len(), 3, "{messages:?}");
        assert!(messages.iter().any(|m| m.contains("`replica`")));
        assert!(messages.iter().any(|m| m.contains("wrong type")));
        assert!(messages.iter().any(|m| m.contains("`htp`")));
        let replica = raw
            .diagnostics
            .iter()
            .find(|d| d.message.contains("replica"))
            .unwrap();
        assert_eq!(
            replica
                .help
                .as_deref()
                .map(|h| h.contains("did you mean `replicas`")),
            Some(true)
        );
        assert_eq!(raw.services.len(), 1);
        // What could be read is kept for the semantic checks.
        assert_eq!(
            raw.services[0]
                .value
                .as_ref()
                .map(|s| s.image.get_ref().as_str()),
            Some("app:1")
        );
    }

    #[test]
    fn syntax_errors_stop_before_semantics() {
        let raw = parse("[project\nname = 1\n");
        assert!(!raw.diagnostics.is_empty());
        assert!(raw.diagnostics[0].message.starts_with("invalid TOML"));
        assert!(raw.diagnostics[0].span.is_some());
    }

    #[test]
    fn missing_required_key_is_reported_once() {
        let raw = parse("[project]\nname = \"p\"\n[service.a]\nreplicas = 2\n");
        assert_eq!(raw.diagnostics.len(), 1);
        assert!(raw.diagnostics[0].message.contains("`image`"));
    }
}
