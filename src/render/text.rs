//! The terminal view: one line per resource (risky first), then the details of each, then
//! the summary line. Styles are ANSI codes; the caller strips them when colour is off.

use std::fmt::Write as _;

use anstyle::{AnsiColor, Style};
use serde_json::Value;

use super::{block_diff, environment_lines, headline, inline, is_block};
use crate::plan::{Action, AttributeChange, Plan, ResourceChange, Spec, Step};

struct Paint {
    color: bool,
}

impl Paint {
    fn style(&self, style: Style, s: &str) -> String {
        if self.color {
            format!("{}{s}{}", style.render(), style.render_reset())
        } else {
            s.to_string()
        }
    }
    fn action(&self, action: Action, s: &str) -> String {
        let color = match action {
            Action::Create | Action::Run => AnsiColor::Green,
            Action::Update | Action::Scale => AnsiColor::Yellow,
            Action::Replace => AnsiColor::Magenta,
            Action::Destroy => AnsiColor::Red,
            Action::NoOp => return s.to_string(),
        };
        self.style(Style::new().fg_color(Some(color.into())), s)
    }
    fn sign(&self, sign: char, s: &str) -> String {
        match sign {
            '+' => self.action(Action::Create, s),
            '-' => self.action(Action::Destroy, s),
            '~' => self.action(Action::Update, s),
            _ => s.to_string(),
        }
    }
    fn bold(&self, s: &str) -> String {
        self.style(Style::new().bold(), s)
    }
    fn dim(&self, s: &str) -> String {
        self.style(Style::new().dimmed(), s)
    }
}

/// Renders the plan for a terminal or a log.
pub fn text(plan: &Plan, color: bool) -> String {
    let p = Paint { color };
    let mut out = String::new();
    let state = match &plan.prior.lineage {
        Some(l) => format!(
            "state serial {} of lineage {l}, revision {}",
            plan.prior.serial, plan.prior.revision
        ),
        None => "no state yet: everything is new".to_string(),
    };
    let _ = writeln!(
        out,
        "{} for project {} ({state})",
        p.bold("gantry plan"),
        p.bold(&plan.project)
    );
    let _ = writeln!(out);
    if !plan.drift.is_empty() {
        let _ = writeln!(
            out,
            "{}",
            p.bold(&format!(
                "Drift found by --refresh ({}): the engines differ from the recorded state",
                plan.drift.len()
            ))
        );
        for d in &plan.drift {
            let _ = writeln!(
                out,
                "  {} {} on {}: {}",
                p.action(Action::Update, "~"),
                d.container,
                d.host,
                d.detail
            );
        }
        let _ = writeln!(out);
    }
    let review = plan.review_order();
    if review.is_empty() {
        let _ = writeln!(out, "{}", p.bold(&plan.summary.line()));
        return out;
    }

    let width = review
        .iter()
        .map(|c| c.address.to_string().len())
        .max()
        .unwrap_or(0);
    let _ = writeln!(
        out,
        "Resource actions, risky first ({} create, {} update in place, {} replace by rolling, {} destroy):",
        p.action(Action::Create, "+"),
        p.action(Action::Update, "~"),
        p.action(Action::Replace, "-/+"),
        p.action(Action::Destroy, "-")
    );
    let _ = writeln!(out);
    for c in &review {
        let risk = if c.is_risky() {
            let list: Vec<&str> = c.risks.iter().map(|r| r.describe()).collect();
            format!(
                "  {}",
                p.action(Action::Destroy, &format!("! {}", list.join(", ")))
            )
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "  {} {:<width$}  {}{risk}",
            p.action(c.action, &format!("{:>3}", c.action.symbol())),
            c.address.to_string(),
            headline(c)
        );
    }

    for c in &review {
        let _ = writeln!(out);
        details(&mut out, &p, c);
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "{}", p.bold(&plan.summary.line()));
    out
}

/// The details of one resource without colour (the Markdown view embeds them).
pub(crate) fn text_details(c: &ResourceChange) -> String {
    let mut out = String::new();
    details(&mut out, &Paint { color: false }, c);
    out
}

fn details(out: &mut String, p: &Paint, c: &ResourceChange) {
    let swarm =
        matches!(&c.after, Some(Spec::Service(s)) if s.runtime == crate::model::Runtime::Swarm);
    let what = match c.action {
        Action::Create => "will be created",
        Action::Update => "will be updated in place",
        Action::Replace if swarm => "will be rolled by Docker Swarm (one service update)",
        Action::Replace => "will be rolled: new containers, batch by batch",
        Action::Scale => "will be scaled",
        Action::Destroy => "will be destroyed",
        Action::NoOp => "is unchanged",
        Action::Run => "will run",
    };
    let _ = writeln!(out, "{}", p.bold(&format!("# {} {what}", c.address)));
    match c.action {
        Action::Create | Action::Run if c.attributes.is_empty() => {
            if let Some(after) = &c.after {
                for (path, v) in shown_attributes(after) {
                    attribute_line(out, p, '+', &path, &v);
                }
            }
        }
        Action::Destroy => {
            if let Some(Spec::Service(s)) = &c.before {
                attribute_line(out, p, '-', "image", &Value::String(s.image.clone()));
                attribute_line(out, p, '-', "replicas", &Value::from(s.replicas));
                let kept = super::named_volumes(s);
                if !kept.is_empty() {
                    let _ = writeln!(
                        out,
                        "  {}",
                        p.dim(&format!(
                            "keeps its named volume{} {} (removed only by `gantry prune --volumes`)",
                            if kept.len() == 1 { "" } else { "s" },
                            kept.join(", ")
                        ))
                    );
                }
            }
        }
        _ => {
            let width = c.attributes.iter().map(|a| a.path.len()).max().unwrap_or(0);
            for a in &c.attributes {
                change_line(out, p, a, width);
            }
        }
    }
    if let Some(why) = c.roll_order.as_ref().and_then(|o| o.explain()) {
        let _ = writeln!(out, "  {why}");
    }
    if !c.steps.is_empty() {
        let policy = match &c.after {
            // A Swarm step says its own update settings.
            Some(Spec::Service(s)) if c.action == Action::Replace && !swarm => format!(
                " ({}, batch {}, drain {}, soak {}, on failure: {}{})",
                s.rollout.order,
                s.rollout.batch,
                s.rollout.drain,
                s.rollout.soak,
                s.rollout.on_failure,
                match (s.hosts.len(), s.rollout.hosts_in_parallel) {
                    (1, _) => String::new(),
                    (_, 1) => ", host after host".to_string(),
                    (_, n) => format!(", {n} hosts at a time"),
                }
            ),
            _ => String::new(),
        };
        let _ = writeln!(out, "  steps{policy}:");
        for line in step_lines(&c.steps) {
            let _ = writeln!(out, "    {line}");
        }
    }
}

/// Steps grouped per host and batch, one line each: `host local, batch 1/3: a -> b -> c`.
pub(crate) fn step_lines(steps: &[Step]) -> Vec<String> {
    let mut lines: Vec<(String, Vec<String>)> = Vec::new();
    for s in steps {
        let key = match (&s.host, &s.batch) {
            (Some(h), Some(b)) => format!("host {h}, batch {}/{}", b.number, b.of),
            (Some(h), None) => format!("host {h}"),
            (None, _) => String::new(),
        };
        match lines.last_mut() {
            Some((k, items)) if *k == key => items.push(s.describe()),
            _ => lines.push((key, vec![s.describe()])),
        }
    }
    lines
        .into_iter()
        .map(|(k, items)| {
            if k.is_empty() {
                items.join(" -> ")
            } else {
                format!("{k}: {}", items.join(" -> "))
            }
        })
        .collect()
}

/// The attributes of a new resource, flattened (`rollout.batch`), the environment masked.
pub(crate) fn shown_attributes(spec: &Spec) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let Ok(Value::Object(map)) = serde_json::to_value(spec) else {
        return out;
    };
    let order: Vec<&str> = match spec {
        Spec::Service(_) => crate::plan::SERVICE_FIELDS.to_vec(),
        Spec::Lb(_) | Spec::Task(_) => map.keys().map(String::as_str).collect(),
    };
    for key in order {
        if let Spec::Service(s) = spec {
            match key {
                "env" => {
                    let lines = environment_lines(s);
                    if !lines.is_empty() {
                        out.push((
                            "environment".to_string(),
                            Value::Array(lines.into_iter().map(Value::String).collect()),
                        ));
                    }
                    continue;
                }
                "env_file" | "secret_env" => continue,
                _ => {}
            }
        }
        if let Some(v) = map.get(key) {
            flatten(key, v, &mut out);
        }
    }
    out
}

fn flatten(path: &str, v: &Value, out: &mut Vec<(String, Value)>) {
    match v {
        Value::Object(m) if !["labels", "host_ports"].contains(&path) => {
            for (k, v) in m {
                flatten(&format!("{path}.{k}"), v, out);
            }
        }
        _ => out.push((path.to_string(), v.clone())),
    }
}

fn attribute_line(out: &mut String, p: &Paint, sign: char, path: &str, v: &Value) {
    let short = super::scalar(v);
    if path == "environment" || matches!(v, Value::Object(_)) || short.len() > 60 {
        let _ = writeln!(out, "  {} {path}", p.sign(sign, &sign.to_string()));
        let lines = match (path, v) {
            ("environment", Value::Array(items)) => items
                .iter()
                .map(|i| i.as_str().unwrap_or_default().to_string())
                .collect(),
            _ => super::value_lines(v),
        };
        for line in lines {
            let _ = writeln!(out, "        {}", p.sign(sign, &line));
        }
    } else {
        let _ = writeln!(
            out,
            "  {} {path} = {}",
            p.sign(sign, &sign.to_string()),
            super::scalar(v)
        );
    }
}

fn change_line(out: &mut String, p: &Paint, a: &AttributeChange, width: usize) {
    let sign = match (&a.before, &a.after) {
        (None, Some(_)) => '+',
        (Some(_), None) => '-',
        _ => '~',
    };
    let forces = if a.forces_replacement {
        p.dim("  (new containers)")
    } else {
        String::new()
    };
    if is_block(a) {
        let _ = writeln!(
            out,
            "  {} {}{forces}",
            p.sign(sign, &sign.to_string()),
            a.path
        );
        for (s, line) in block_diff(&a.before, &a.after) {
            let _ = writeln!(out, "      {}", p.sign(s, &format!("{s} {line}")));
        }
        return;
    }
    let value = match sign {
        '+' => inline(&a.after, a.sensitive),
        '-' => inline(&a.before, a.sensitive),
        _ => format!(
            "{} -> {}",
            inline(&a.before, a.sensitive),
            inline(&a.after, a.sensitive)
        ),
    };
    let _ = writeln!(
        out,
        "  {} {:<width$} = {value}{forces}",
        p.sign(sign, &sign.to_string()),
        a.path
    );
}
