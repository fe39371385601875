//! The `[lb.NAME]` entries and their ties to the services that use them.

use std::collections::BTreeMap;
use std::ops::Range;

use super::Validator;
use crate::config::{Named, SpStr, TomlLb, TomlService};
use crate::diag::Diagnostic;
use crate::model::{Duration, LbKind, LbSpec};

impl Validator<'_> {
    pub(super) fn lb(&mut self, named: &Named<TomlLb>, t: &TomlLb) -> Option<LbSpec> {
        let errors_before = self.diags.len();
        let kind = self.keyword(
            Some(&t.kind),
            "kind",
            LbKind::WORDS,
            LbKind::parse_word,
            LbKind::Nginx,
        );
        if self.diags.len() > errors_before {
            return None;
        }
        let here = format!("load balancer `{}`", named.name);
        let used: [(&str, bool, LbKind); 15] = [
            (
                "at",
                !t.at.is_empty() && kind != LbKind::Haproxy,
                LbKind::Nginx,
            ),
            ("weights", !t.weights.is_empty(), LbKind::Nginx),
            ("max_fails", t.max_fails.is_some(), LbKind::Nginx),
            ("fail_timeout", t.fail_timeout.is_some(), LbKind::Nginx),
            ("keepalive", t.keepalive.is_some(), LbKind::Nginx),
            ("backup", t.backup.is_some(), LbKind::Nginx),
            ("upstream", t.upstream.is_some(), LbKind::Nginx),
            ("upstream_file", t.upstream_file.is_some(), LbKind::Nginx),
            ("check", t.check.is_some(), LbKind::Nginx),
            ("reload", t.reload.is_some(), LbKind::Nginx),
            ("socket", t.socket.is_some(), LbKind::Haproxy),
            ("backend", t.backend.is_some(), LbKind::Haproxy),
            ("join", t.join.is_some(), LbKind::Command),
            ("leave", t.leave.is_some(), LbKind::Command),
            ("drain_check", t.drain_check.is_some(), LbKind::Command),
        ];
        for (key, present, owner) in used {
            if present && owner != kind {
                self.err(Diagnostic::at(format!("`{key}` is a setting of `kind = \"{owner}\"`, not of `kind = \"{kind}\"`"), t.kind.span()).label(format!("{here} is {kind}")));
            }
        }
        if t.timeout.is_some() && kind != LbKind::Command {
            self.err(Diagnostic::at(
                format!(
                    "`timeout` is a setting of `kind = \"command\"`, not of `kind = \"{kind}\"`"
                ),
                t.kind.span(),
            ));
        }
        let haproxy_at: Vec<String> = if kind == LbKind::Haproxy {
            for a in &t.at {
                if let Err(e) = crate::model::ssh_target::SshTarget::parse(a.get_ref()) {
                    self.err(Diagnostic::at(
                        format!("invalid machine `{}` in `at`: {e}", a.get_ref()),
                        a.span(),
                    ));
                }
            }
            if !t.at.is_empty()
                && let Some(s) = &t.socket
                && !s.get_ref().starts_with('/')
            {
                self.err(Diagnostic::at(
                    "with `at`, `socket` is the absolute path of the stats socket on that machine",
                    s.span(),
                ));
            }
            t.at.iter().map(|a| a.get_ref().clone()).collect()
        } else {
            Vec::new()
        };
        let mut required = |key: &str, v: Option<&SpStr>| -> String {
            match v {
                Some(s) if !s.get_ref().trim().is_empty() => s.get_ref().clone(),
                _ => {
                    self.diags.push(Diagnostic::at(
                        format!("{here} (kind = \"{kind}\") needs `{key}`"),
                        named.span.clone(),
                    ));
                    String::new()
                }
            }
        };
        let spec = match kind {
            LbKind::Nginx => {
                let upstream = required("upstream", t.upstream.as_ref());
                let upstream_file = required("upstream_file", t.upstream_file.as_ref());
                if let Some(u) = &t.upstream
                    && !u
                        .get_ref()
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
                {
                    self.err(
                        Diagnostic::at(
                            format!("invalid nginx upstream name `{}`", u.get_ref()),
                            u.span(),
                        )
                        .help("use letters, digits, `_`, `-` and `.`"),
                    );
                }
                for a in &t.at {
                    if let Err(e) = crate::model::ssh_target::SshTarget::parse(a.get_ref()) {
                        self.err(
                            Diagnostic::at(
                                format!("invalid machine `{}` in `at`: {e}", a.get_ref()),
                                a.span(),
                            )
                            .help("`ssh://user@host` or `ssh://user@host:2222`"),
                        );
                    }
                }
                if !t.at.is_empty()
                    && let Some(f) = &t.upstream_file
                    && !f.get_ref().starts_with('/')
                {
                    self.err(
                        Diagnostic::at(
                            format!("`upstream_file` `{}` must be an absolute path on the machines of `at`", f.get_ref()),
                            f.span(),
                        )
                        .help("e.g. `/etc/nginx/conf.d/app-upstream.conf`"),
                    );
                }
                LbSpec::Nginx {
                    at: t.at.iter().map(|a| a.get_ref().clone()).collect(),
                    upstream,
                    upstream_file,
                    check: self
                        .command(t.check.as_ref(), "check", &named.span)
                        .unwrap_or_else(|| vec!["nginx".into(), "-t".into()]),
                    reload: self
                        .command(t.reload.as_ref(), "reload", &named.span)
                        .unwrap_or_else(|| vec!["nginx".into(), "-s".into(), "reload".into()]),
                    max_fails: t
                        .max_fails
                        .as_ref()
                        .map(|m| self.count(Some(m), "max_fails", 0, 1)),
                    fail_timeout: t
                        .fail_timeout
                        .as_ref()
                        .map(|f| self.duration(Some(f), Duration::from_secs(10))),
                    keepalive: t
                        .keepalive
                        .as_ref()
                        .map(|k| self.count(Some(k), "keepalive", 1, 32)),
                    backup: t.backup.as_ref().and_then(|b| {
                        let ok = b.get_ref().rsplit_once(':').is_some_and(|(h, p)| {
                            !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0)
                        });
                        if !ok {
                            self.err(
                                Diagnostic::at(
                                    format!("invalid `backup` server `{}`", b.get_ref()),
                                    b.span(),
                                )
                                .help("write it as `host:port`, e.g. \"127.0.0.1:8081\""),
                            );
                        }
                        ok.then(|| b.get_ref().clone())
                    }),
                    weights: t
                        .weights
                        .iter()
                        .map(|(svc, w)| (svc.clone(), self.count(Some(w), "weight", 1, 1)))
                        .collect(),
                }
            }
            LbKind::Haproxy => LbSpec::Haproxy {
                socket: required("socket", t.socket.as_ref()),
                at: haproxy_at,
                backend: required("backend", t.backend.as_ref()),
            },
            LbKind::Command => {
                let join = self.command(t.join.as_ref(), "join", &named.span);
                let leave = self.command(t.leave.as_ref(), "leave", &named.span);
                for (key, v) in [("join", &join), ("leave", &leave)] {
                    if v.is_none() && self.diags.len() == errors_before {
                        self.err(
                            Diagnostic::at(
                                format!("{here} (kind = \"command\") needs `{key}`"),
                                named.span.clone(),
                            )
                            .help("e.g. `join = [\"lbctl\", \"add\", \"{address}:{port}\"]`"),
                        );
                    }
                }
                LbSpec::Command {
                    join: join.unwrap_or_default(),
                    leave: leave.unwrap_or_default(),
                    drain_check: self.command(t.drain_check.as_ref(), "drain_check", &named.span),
                    timeout: self.duration(t.timeout.as_ref(), Duration::from_secs(30)),
                }
            }
        };
        (self.diags.len() == errors_before).then_some(spec)
    }

    pub(super) fn lb_members(&mut self, lbs: &[Named<TomlLb>], services: &[Named<TomlService>]) {
        for lb in lbs {
            for (svc, w) in lb.value.iter().flat_map(|v| v.weights.iter()) {
                let member = services.iter().any(|s| {
                    s.name == *svc
                        && s.value
                            .as_ref()
                            .is_none_or(|v| v.lb.iter().any(|l| l.get_ref() == &lb.name))
                });
                if !member {
                    self.err(
                        Diagnostic::at(format!("`weights` names `{svc}`, which is not a member service of load balancer `{}`", lb.name), w.span())
                            .help(format!("add `lb = [\"{}\"]` to service `{svc}`, or remove its weight", lb.name)),
                    );
                }
            }
            let has_member = services.iter().any(|s| match &s.value {
                Some(v) => {
                    v.lb.iter().any(|l| l.get_ref() == &lb.name)
                        || v.rollout
                            .as_ref()
                            .and_then(|r| r.preview_lb.as_ref())
                            .is_some_and(|p| p.get_ref() == &lb.name)
                }
                None => true, // unknown: do not blame the LB for a broken service
            });
            if !has_member {
                self.err(
                    Diagnostic::at(format!("load balancer `{}` has no member services", lb.name), lb.span.clone())
                        .help(format!("add `lb = [\"{}\"]` to the services it should send traffic to, or remove it", lb.name)),
                );
            }
        }
    }

    pub(super) fn shared_upstream_files(&mut self, lbs: &[Named<TomlLb>]) {
        let mut seen: BTreeMap<&str, Range<usize>> = BTreeMap::new();
        // In file order, so that the later declaration is the one blamed.
        let mut files: Vec<&SpStr> = lbs
            .iter()
            .filter_map(|lb| lb.value.as_ref()?.upstream_file.as_ref())
            .collect();
        files.sort_by_key(|f| f.span().start);
        for file in files {
            if let Some(first) = seen.get(file.get_ref().as_str()) {
                self.err(
                    Diagnostic::at(
                        format!(
                            "`upstream_file` `{}` is already owned by another load balancer",
                            file.get_ref()
                        ),
                        file.span(),
                    )
                    .related(first.clone(), "first used here")
                    .help(
                        "each load balancer needs its own include file: gantry rewrites it whole",
                    ),
                );
            } else {
                seen.insert(file.get_ref(), file.span());
            }
        }
    }
}
