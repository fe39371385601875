//! Views of a [`Plan`]: text for terminals, Markdown for pull-request comments, JSON for
//! machines. All three are rendered from the same Plan value; none of them decides anything.

mod markdown;
pub mod pull;
mod text;

use std::io::{self, Write};

use serde_json::Value;

use crate::model::ServiceSpec;
use crate::plan::{AttributeChange, Plan, Spec};

pub use markdown::{GITHUB_COMMENT_LIMIT, markdown};
pub use text::text;

/// Output formats of `plan` (and later of every command with a JSON view).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Markdown,
    Json,
}

pub fn json(plan: &Plan) -> String {
    plan.to_json()
}

/// Writes, treating a closed pipe (`gantry plan | head`) as success.
pub fn write_out(out: &mut dyn Write, s: &str) -> io::Result<()> {
    match out.write_all(s.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        r => r,
    }
}

/// The lines a value is shown as in a block diff: one argument, one `KEY=value`, one item
/// per line; scalars as one line.
pub(crate) fn value_lines(v: &Value) -> Vec<String> {
    match v {
        Value::Array(items) => items.iter().map(scalar).collect(),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| format!("{k}={}", unquoted(v)))
            .collect(),
        other => vec![scalar(other)],
    }
}

/// Whether an attribute is shown as a line-by-line block diff (similar) rather than inline.
pub(crate) fn is_block(a: &AttributeChange) -> bool {
    let multi = |v: &Option<Value>| match v {
        Some(Value::Object(_)) => true,
        Some(Value::Array(items)) => items.len() > 1,
        _ => false,
    };
    !a.sensitive && (multi(&a.before) || multi(&a.after))
}

/// A value on one line: strings quoted, arrays as `["a", "b"]`.
pub(crate) fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(scalar).collect::<Vec<_>>().join(", ")
        ),
        other => other.to_string(),
    }
}

fn unquoted(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub(crate) fn inline(v: &Option<Value>, sensitive: bool) -> String {
    match (v, sensitive) {
        (None, _) => "(none)".to_string(),
        (Some(_), true) => "(sensitive)".to_string(),
        (Some(v), false) => scalar(v),
    }
}

/// Unified line diff of two blocks: `(' ' | '-' | '+', line)`.
pub(crate) fn block_diff(before: &Option<Value>, after: &Option<Value>) -> Vec<(char, String)> {
    let text = |v: &Option<Value>| -> String {
        v.as_ref()
            .map(value_lines)
            .unwrap_or_default()
            .iter()
            .map(|l| format!("{l}\n"))
            .collect()
    };
    let (b, a) = (text(before), text(after));
    similar::TextDiff::from_lines(&b, &a)
        .iter_all_changes()
        .map(|c| {
            let sign = match c.tag() {
                similar::ChangeTag::Delete => '-',
                similar::ChangeTag::Insert => '+',
                similar::ChangeTag::Equal => ' ',
            };
            (sign, c.value().trim_end_matches('\n').to_string())
        })
        .collect()
}

/// The effective environment of a service as shown to reviewers: plain values, then the
/// names that come from the env file and gantry's environment, masked.
pub(crate) fn environment_lines(spec: &ServiceSpec) -> Vec<String> {
    let mut lines: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if let Some(f) = &spec.env_file {
        lines.extend(
            f.keys
                .iter()
                .map(|k| format!("{k}=(sensitive, from {})", f.path)),
        );
    }
    lines.extend(
        spec.secret_env
            .iter()
            .map(|k| format!("{k}=(sensitive, from gantry's environment)")),
    );
    lines
}

/// The named volumes a service mounts, quoted (`` `cache-data` ``), each once, in the order
/// written: what a destroy leaves in place.
pub(crate) fn named_volumes(spec: &ServiceSpec) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for v in spec.volumes.iter().filter_map(|m| m.volume()) {
        let quoted = format!("`{v}`");
        if !out.contains(&quoted) {
            out.push(quoted);
        }
    }
    out
}

/// One-line description of what happens to a resource, e.g. `roll 3 replicas in 3 batches`.
pub(crate) fn headline(c: &crate::plan::ResourceChange) -> String {
    use crate::plan::Action;
    let svc = |s: &Option<Spec>| match s {
        Some(Spec::Service(s)) => Some(s.as_ref().clone()),
        _ => None,
    };
    let (before, after) = (svc(&c.before), svc(&c.after));
    let batches = c
        .steps
        .iter()
        .filter_map(|s| s.batch.map(|b| (s.host.clone(), b.number)))
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let plural = |n: u32| if n == 1 { "replica" } else { "replicas" };
    match (c.action, before, after) {
        (Action::Create, _, Some(a)) => format!("create {} {}", a.replicas, plural(a.replicas)),
        (Action::Replace, Some(b), Some(a)) => {
            let why: Vec<&str> = c
                .attributes
                .iter()
                .filter(|x| x.forces_replacement)
                .map(|x| x.path.split('.').next().unwrap_or_default())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            let count = if b.replicas == a.replicas {
                format!("{} {}", a.replicas, plural(a.replicas))
            } else {
                format!("{} -> {} replicas", b.replicas, a.replicas)
            };
            // `replicas` is per host.
            let count = match a.hosts.len() {
                0 | 1 => count,
                n => format!("{count} on each of {n} hosts"),
            };
            if a.runtime == crate::model::Runtime::Swarm {
                return format!("roll {count} through Docker Swarm ({})", why.join(", "));
            }
            if let Some(bg) = &a.rollout.blue_green {
                let preview = bg
                    .preview_lb
                    .as_ref()
                    .map_or(String::new(), |p| format!(", previewed on lb.{p}"));
                return format!(
                    "blue-green: new colour of {count} beside the live one{preview}, then one switch ({})",
                    why.join(", ")
                );
            }
            // Forced stop-first is worth a reviewer's glance in the one-line view too.
            let forced = match c.roll_order.as_ref().and_then(|o| o.reason.as_ref()) {
                Some(reason) => format!(", stop-first for {reason}"),
                None => String::new(),
            };
            format!(
                "roll {count} in {batches} batch{}{forced} ({})",
                if batches == 1 { "" } else { "es" },
                why.join(", ")
            )
        }
        (Action::Scale, Some(b), Some(a)) => {
            format!("scale {} -> {} replicas", b.replicas, a.replicas)
        }
        (Action::Destroy, Some(b), _) => {
            let kept = named_volumes(&b);
            let kept = match kept.len() {
                0 => String::new(),
                1 => format!(", volume {} kept", kept[0]),
                _ => format!(", volumes {} kept", kept.join(", ")),
            };
            format!(
                "destroy ({} {} stopped{kept})",
                b.replicas,
                plural(b.replicas)
            )
        }
        (Action::Update, _, _) => {
            let paths: Vec<&str> = c.attributes.iter().map(|x| x.path.as_str()).collect();
            format!("update in place ({})", paths.join(", "))
        }
        (Action::Run, _, _) => match &c.reason {
            Some(why) => format!("run ({why})"),
            None => "run".to_string(),
        },
        (action, _, _) => action.verb().to_string(),
    }
}
