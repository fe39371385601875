//! From raw `Toml*` values to the [`Model`], reporting every problem at once.
//!
//! Each check adds a diagnostic and carries on with a placeholder, so one run shows the
//! user the whole list. Cross-resource checks (references, cycles, port clashes) run over
//! whatever could be read, and never blame a reference to a resource that exists but had
//! errors of its own.
//!
//! One file per part of the config (`hosts`, `service`, `rollout`: health, warm-up and
//! strategy, `lb`), and `cross` for the checks that need every service read first. They
//! share the [`Validator`] defined here, which owns the list of diagnostics.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::str::FromStr;

use toml::Spanned;

use super::*;
use crate::config::{RawConfig, SpStr};
use crate::diag::{Diagnostic, closest, list_names};

mod container;
mod cross;
mod hooks;
mod hosts;
mod lb;
mod registry;
mod rollout;
mod service;
mod state;
pub use state::state_backend;
mod swarm;
mod task;

/// What validation needs to know about files named by the config. The real implementation
/// reads them (ops layer); tests pass a table.
pub trait FileFacts {
    /// Reads an env file named in the config (path as written, relative to the config).
    fn env_file(&self, path: &str) -> Result<EnvFileFacts, String>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvFileFacts {
    pub keys: Vec<String>,
    pub sha256: String,
}

/// Validates a parsed configuration. `Err` holds every diagnostic found, in file order.
pub fn validate(raw: RawConfig, files: &dyn FileFacts) -> Result<Model, Vec<Diagnostic>> {
    let mut v = Validator {
        diags: raw.diagnostics,
        files,
    };
    let project = v.project(raw.project.as_ref());
    let keep_previous = v.count(
        raw.project.as_ref().and_then(|p| p.keep_previous.as_ref()),
        "keep_previous",
        0,
        1,
    );
    let hosts = v.hosts(&raw.hosts);
    // Sets: with 10,000 services, a linear search per reference is 10^8 comparisons.
    let host_names: BTreeSet<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
    let known_services: BTreeSet<&str> = raw.services.iter().map(|s| s.name.as_str()).collect();
    let known_lbs: BTreeSet<&str> = raw.lbs.iter().map(|l| l.name.as_str()).collect();

    let mut services = BTreeMap::new();
    let mut dep_spans: BTreeMap<(String, String), Range<usize>> = BTreeMap::new();
    let mut port_claims: Vec<cross::PortClaim> = Vec::new();
    for named in &raw.services {
        v.name("service", &named.name, &named.span);
        let Some(toml) = &named.value else { continue };
        for dep in &toml.depends_on {
            dep_spans.insert((named.name.clone(), dep.get_ref().clone()), dep.span());
        }
        let ctx = ServiceCtx {
            partial: named.partial,
            name: &named.name,
            span: named.span.clone(),
            services: &known_services,
            lbs: &known_lbs,
            hosts: &host_names,
        };
        for n in toml.networks.iter().filter(|n| **n.get_ref() == project) {
            v.err(
                Diagnostic::at(
                    format!(
                        "service `{}` lists the project's own network `{}` in `networks`",
                        named.name,
                        n.get_ref()
                    ),
                    n.span(),
                )
                .help("every container joins the project's network already; `networks` names other, existing networks"),
            );
        }
        let (spec, claims) = v.service(&ctx, toml);
        port_claims.extend(claims);
        if let Some(spec) = spec {
            services.insert(named.name.clone(), spec);
        }
    }
    v.port_clashes(&port_claims);

    let mut lbs = BTreeMap::new();
    let mut lb_hosts = BTreeMap::new();
    for named in &raw.lbs {
        v.name("lb", &named.name, &named.span);
        let Some(toml) = &named.value else { continue };
        if let Some(spec) = v.lb(named, toml) {
            lbs.insert(named.name.clone(), spec);
        }
        let here = format!("load balancer `{}`", named.name);
        let scoped: Vec<String> = toml
            .hosts
            .iter()
            .filter(|h| v.reference("host", h, &host_names, &here))
            .map(|h| h.get_ref().clone())
            .collect();
        if !scoped.is_empty() {
            lb_hosts.insert(named.name.clone(), scoped);
        }
    }
    v.lb_members(&raw.lbs, &raw.services);
    v.shared_upstream_files(&raw.lbs);
    v.cycles(&dep_spans);
    let hooks = v.hooks(raw.hooks.as_ref());

    let mut tasks = BTreeMap::new();
    for named in &raw.tasks {
        if let Some(task) = v.task(named, &known_services, &services) {
            tasks.insert(named.name.clone(), task);
        }
    }
    v.task_cycles(&raw.tasks, &dep_spans);
    let registries = v.registries(&raw.registries);
    let state = v.state_backend(raw.state.as_ref(), &project);

    if v.diags.is_empty() {
        Ok(Model {
            project,
            keep_previous,
            labels: raw
                .project
                .as_ref()
                .map(|p| p.labels.clone())
                .unwrap_or_default(),
            hosts,
            services,
            lbs,
            lb_hosts,
            tasks,
            hooks,
            registries,
            state,
        })
    } else {
        v.diags
            .sort_by_key(|d| d.span.as_ref().map_or(0, |s| s.start));
        Err(v.diags)
    }
}

struct Validator<'f> {
    diags: Vec<Diagnostic>,
    files: &'f dyn FileFacts,
}

struct ServiceCtx<'a> {
    /// Some entries were unreadable: skip "missing key" checks.
    partial: bool,
    name: &'a str,
    span: Range<usize>,
    services: &'a BTreeSet<&'a str>,
    lbs: &'a BTreeSet<&'a str>,
    hosts: &'a BTreeSet<&'a str>,
}

const NAME_HELP: &str = "use lower-case letters, digits and `-` (at most 40 characters, starting with a letter, not ending with `-`)";

/// A service's name is also its DNS name on the project's network (an alias of each of its
/// containers), so it must be a DNS label (RFC 1123: at most 63 characters of `a-z`, `0-9`
/// and `-`, not starting or ending with `-`); gantry's names are stricter still, since they
/// go into container names too.
const SERVICE_NAME_HELP: &str = "a service's name is its DNS name on the project network (other containers reach it as `http://NAME:PORT`), so use lower-case letters, digits and `-` (at most 40 characters, starting with a letter, not ending with `-`)";

fn valid_name(name: &str) -> bool {
    name.len() <= 40
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-')
}

/// The closest valid name: lower case, `_`, `.` and spaces as `-`.
fn suggested_name(name: &str) -> String {
    let mapped: String = name
        .to_ascii_lowercase()
        .chars()
        .map(|c| if matches!(c, '_' | '.' | ' ') { '-' } else { c })
        .collect();
    mapped.trim_matches('-').to_string()
}

fn valid_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Validator<'_> {
    fn err(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    fn name(&mut self, what: &str, name: &str, span: &Range<usize>) {
        if !valid_name(name) {
            let mut help = if what == "service" {
                SERVICE_NAME_HELP.to_string()
            } else {
                NAME_HELP.to_string()
            };
            let fixed = suggested_name(name);
            if valid_name(&fixed) && fixed != name {
                help = format!("{help}; e.g. `{fixed}`");
            }
            self.err(
                Diagnostic::at(format!("invalid {what} name `{name}`"), span.clone()).help(help),
            );
        }
    }

    fn project(&mut self, project: Option<&crate::config::TomlProject>) -> String {
        let Some(p) = project else {
            return String::new();
        };
        let name = p.name.get_ref();
        if !valid_name(name) {
            self.err(
                Diagnostic::at(format!("invalid project name `{name}`"), p.name.span())
                    .help(NAME_HELP),
            );
        }
        name.clone()
    }

    fn duration(&mut self, value: Option<&SpStr>, default: Duration) -> Duration {
        match value {
            None => default,
            Some(s) => match Duration::from_str(s.get_ref()) {
                Ok(d) => d,
                Err(e) => {
                    self.err(Diagnostic::at(e, s.span()).label("not a duration"));
                    default
                }
            },
        }
    }

    fn size(&mut self, value: Option<&SpStr>) -> Option<ByteSize> {
        let s = value?;
        match ByteSize::from_str(s.get_ref()) {
            Ok(b) => Some(b),
            Err(e) => {
                self.err(Diagnostic::at(e, s.span()).label("not a size"));
                None
            }
        }
    }

    /// An integer that must be at least `min`.
    fn count(&mut self, value: Option<&Spanned<i64>>, key: &str, min: i64, default: u32) -> u32 {
        let Some(v) = value else { return default };
        let n = *v.get_ref();
        if n < min {
            self.err(
                Diagnostic::at(
                    format!("`{key}` must be at least {min}, found {n}"),
                    v.span(),
                )
                .label("too small"),
            );
            return default;
        }
        match u32::try_from(n) {
            Ok(n) => n,
            Err(_) => {
                self.err(Diagnostic::at(
                    format!("`{key}` is too large ({n})"),
                    v.span(),
                ));
                default
            }
        }
    }

    fn keyword<T>(
        &mut self,
        value: Option<&SpStr>,
        key: &str,
        words: &[&str],
        parse: fn(&str) -> Option<T>,
        default: T,
    ) -> T {
        let Some(s) = value else { return default };
        match parse(s.get_ref()) {
            Some(v) => v,
            None => {
                let mut d =
                    Diagnostic::at(format!("invalid `{key}` value `{}`", s.get_ref()), s.span())
                        .label(format!(
                            "expected one of {}",
                            list_names(words.iter().copied())
                        ));
                if let Some(best) = closest(s.get_ref(), words.iter().copied()) {
                    d = d.help(format!("did you mean `{best}`?"));
                }
                self.err(d);
                default
            }
        }
    }

    fn reference(&mut self, what: &str, name: &SpStr, known: &BTreeSet<&str>, from: &str) -> bool {
        if known.contains(name.get_ref().as_str()) {
            return true;
        }
        let mut d = Diagnostic::at(
            format!(
                "{from} names {what} `{}`, which does not exist",
                name.get_ref()
            ),
            name.span(),
        )
        .label(format!("no such {what}"));
        let defined = if known.is_empty() {
            format!("no {what} is defined")
        } else {
            format!("defined: {}", list_names(known.iter().copied()))
        };
        d = d.help(match closest(name.get_ref(), known.iter().copied()) {
            Some(best) => format!("did you mean `{best}`? ({defined})"),
            None => defined,
        });
        self.err(d);
        false
    }

    fn command(
        &mut self,
        value: Option<&Vec<String>>,
        key: &str,
        span: &Range<usize>,
    ) -> Option<Vec<String>> {
        let cmd = value?;
        if cmd.is_empty() || cmd[0].trim().is_empty() {
            self.err(Diagnostic::at(
                format!("`{key}` must name a program: it is empty"),
                span.clone(),
            ));
            return None;
        }
        Some(cmd.clone())
    }
}
