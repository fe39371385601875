//! How a service's replicas are judged and replaced: health check, warm-up, rollout.

use std::ops::Range;

use super::service::{reason_subject, scale_help};
use super::{ServiceCtx, Validator};
use crate::config::{TomlHealth, TomlRollout, TomlWarmup};
use crate::diag::Diagnostic;
use crate::model::{
    BlueGreenSpec, Duration, HealthSpec, OnFailure, Order, RolloutSpec, StopFirstReason, Strategy,
    WarmupSpec,
};

impl Validator<'_> {
    pub(super) fn health(
        &mut self,
        ctx: &ServiceCtx<'_>,
        h: &TomlHealth,
        has_port: bool,
    ) -> HealthSpec {
        let http = h.http.as_ref().and_then(|p| {
            if !p.get_ref().starts_with('/') {
                self.err(Diagnostic::at(
                    format!(
                        "health `http` must be a path starting with `/`, found `{}`",
                        p.get_ref()
                    ),
                    p.span(),
                ));
                None
            } else if !has_port {
                self.err(Diagnostic::at(
                    format!(
                        "service `{}` has an HTTP health check but no `port` to probe",
                        ctx.name
                    ),
                    p.span(),
                ));
                None
            } else {
                Some(p.get_ref().clone())
            }
        });
        let command = self.command(h.command.as_ref(), "health.command", &ctx.span);
        match (&h.http, &h.command) {
            (None, None) if !ctx.partial => self.err(
                Diagnostic::at(
                    format!("service `{}`: `health` needs `http` or `command`", ctx.name),
                    ctx.span.clone(),
                )
                .help("e.g. `http = \"/healthz\"` (probed from the host, needs `port`) or `command = [\"redis-cli\", \"ping\"]` (run by the engine inside the container)"),
            ),
            (Some(p), Some(_)) => self.err(
                Diagnostic::at("`health` has both `http` and `command`: choose one", p.span())
                    .help("`http` is probed by gantry from the host; `command` is run by the engine inside the container"),
            ),
            _ => {}
        }
        let interval = self.duration(h.interval.as_ref(), Duration::from_secs(2));
        let timeout = self.duration(h.timeout.as_ref(), Duration::from_secs(1));
        if let Some(t) = &h.timeout
            && timeout.is_zero()
        {
            self.err(
                Diagnostic::at("health `timeout` must be more than 0", t.span()).label("zero"),
            );
        }
        if let Some(i) = &h.interval
            && interval.is_zero()
        {
            self.err(Diagnostic::at(
                "health `interval` must be more than 0",
                i.span(),
            ));
        }
        HealthSpec {
            http,
            command,
            interval,
            timeout,
            retries: self.count(h.retries.as_ref(), "retries", 1, 3),
            start_period: self.duration(h.start_period.as_ref(), Duration::default()),
        }
    }

    pub(super) fn warmup(&mut self, w: &TomlWarmup, has_port: bool, here: &str) -> WarmupSpec {
        if !w.http.get_ref().starts_with('/') {
            self.err(Diagnostic::at(
                format!(
                    "warmup `http` must be a path starting with `/`, found `{}`",
                    w.http.get_ref()
                ),
                w.http.span(),
            ));
        } else if !has_port {
            self.err(Diagnostic::at(
                format!("{here} has a warm-up but no `port` to send it to"),
                w.http.span(),
            ));
        }
        let max_latency = self.duration(w.max_latency.as_ref(), Duration::from_millis(500));
        let deadline = self.duration(w.deadline.as_ref(), Duration::from_secs(120));
        if let Some(m) = &w.max_latency
            && max_latency.is_zero()
        {
            self.err(Diagnostic::at(
                "warmup `max_latency` must be more than 0",
                m.span(),
            ));
        }
        if let Some(d) = &w.deadline
            && deadline <= max_latency
        {
            self.err(Diagnostic::at(format!("warmup `deadline` ({deadline}) must be longer than `max_latency` ({max_latency})"), d.span()));
        }
        WarmupSpec {
            http: w.http.get_ref().clone(),
            max_latency,
            successes: self.count(w.successes.as_ref(), "successes", 1, 3),
            concurrency: self.count(w.concurrency.as_ref(), "concurrency", 1, 1),
            deadline,
        }
    }

    pub(super) fn rollout(
        &mut self,
        r: Option<&TomlRollout>,
        replicas: u32,
        here: &str,
        span: &Range<usize>,
        stop_first: Option<&StopFirstReason>,
    ) -> RolloutSpec {
        let empty = TomlRollout {
            strategy: None,
            batch: None,
            order: None,
            drain: None,
            soak: None,
            on_failure: None,
            scale_down_delay: None,
            keep_old_replicas: None,
            preview_check: None,
            preview_lb: None,
            hosts_in_parallel: None,
            idle_command: None,
            resume_command: None,
        };
        let r = r.unwrap_or(&empty);
        let strategy = self.keyword(
            r.strategy.as_ref(),
            "strategy",
            Strategy::WORDS,
            Strategy::parse_word,
            Strategy::Rolling,
        );
        let batch = self.count(r.batch.as_ref(), "batch", 1, 1);
        if let Some(b) = &r.batch
            && batch > replicas
        {
            self.err(
                Diagnostic::at(
                    format!("`batch` ({batch}) is larger than `replicas` ({replicas}) of {here}"),
                    b.span(),
                )
                .label("more than there are replicas")
                .help(format!("use a batch between 1 and {replicas}")),
            );
        }
        // Two copies of a replica at once must never run where a reason forbids it: the
        // default is stop-first there, and start-first or blue-green written is refused.
        let order = self.keyword(
            r.order.as_ref(),
            "order",
            Order::WORDS,
            Order::parse_word,
            if stop_first.is_some() {
                Order::StopFirst
            } else {
                Order::StartFirst
            },
        );
        if let Some(reason) = stop_first {
            let refuse = |how: &str, at: Range<usize>, label: &str, help: String| {
                let lead = match reason {
                    StopFirstReason::ReadWriteVolume { .. } => format!("{how}, "),
                    _ => String::new(),
                };
                Diagnostic::at(
                    format!(
                        "{here} {}: {lead}{}",
                        reason_subject(reason),
                        reason.consequence()
                    ),
                    at,
                )
                .label(label.to_string())
                .help(help)
            };
            let volume_help = |first: &str| {
                format!(
                    "{first}; or mount the volume read-only (`:ro`) if the process only reads it"
                )
            };
            if order == Order::StartFirst
                && let Some(o) = &r.order
            {
                let help = match reason {
                    StopFirstReason::ReadWriteVolume { .. } => volume_help(
                        "remove `order` (a service with a read-write volume rolls stop-first by default) or write `order = \"stop-first\"`",
                    ),
                    _ => scale_help(reason),
                };
                let d = refuse(
                    "rolling start-first",
                    o.span(),
                    "starts the new copy before the old one stops",
                    help,
                );
                self.err(d);
            }
            if strategy == Strategy::BlueGreen
                && let Some(st) = &r.strategy
            {
                let help = match reason {
                    StopFirstReason::ReadWriteVolume { .. } => {
                        volume_help("use `strategy = \"rolling\"` (stop-first by default here)")
                    }
                    _ => scale_help(reason),
                };
                let d = refuse(
                    "with blue-green",
                    st.span(),
                    "runs a second colour beside the live one",
                    help,
                );
                self.err(d);
            }
        }
        let on_failure = self.keyword(
            r.on_failure.as_ref(),
            "on_failure",
            OnFailure::WORDS,
            OnFailure::parse_word,
            OnFailure::Rollback,
        );
        let drain = self.duration(r.drain.as_ref(), Duration::from_secs(5));
        let soak = self.duration(r.soak.as_ref(), Duration::default());
        let blue_green = match strategy {
            Strategy::BlueGreen => {
                let preview_check = self.command(r.preview_check.as_ref(), "preview_check", span);
                Some(BlueGreenSpec {
                    scale_down_delay: self
                        .duration(r.scale_down_delay.as_ref(), Duration::from_secs(600)),
                    keep_old_replicas: match &r.keep_old_replicas {
                        Some(k) if *k.get_ref() > i64::from(replicas) => {
                            self.err(Diagnostic::at(
                                format!(
                                    "`keep_old_replicas` ({}) is more than `replicas` ({replicas})",
                                    k.get_ref()
                                ),
                                k.span(),
                            ));
                            0
                        }
                        k => self.count(k.as_ref(), "keep_old_replicas", 0, 0),
                    },
                    preview_check,
                    preview_lb: r.preview_lb.as_ref().map(|p| p.get_ref().clone()),
                    idle_command: self
                        .spanned_command(r.idle_command.as_ref(), "rollout.idle_command"),
                    resume_command: self
                        .spanned_command(r.resume_command.as_ref(), "rollout.resume_command"),
                })
            }
            Strategy::Rolling => {
                let stray: Vec<(&str, Option<Range<usize>>)> = vec![
                    (
                        "scale_down_delay",
                        r.scale_down_delay.as_ref().map(|s| s.span()),
                    ),
                    (
                        "keep_old_replicas",
                        r.keep_old_replicas.as_ref().map(|s| s.span()),
                    ),
                    (
                        "preview_check",
                        r.preview_check.as_ref().map(|_| span.clone()),
                    ),
                    ("preview_lb", r.preview_lb.as_ref().map(|s| s.span())),
                    ("idle_command", r.idle_command.as_ref().map(|s| s.span())),
                    (
                        "resume_command",
                        r.resume_command.as_ref().map(|s| s.span()),
                    ),
                ];
                for (key, at) in stray {
                    if let Some(at) = at {
                        self.err(
                            Diagnostic::at(
                                format!("`{key}` only applies to `strategy = \"blue-green\"`"),
                                at,
                            )
                            .help("remove it, or set `strategy = \"blue-green\"`"),
                        );
                    }
                }
                None
            }
        };
        let hosts_in_parallel = self.count(r.hosts_in_parallel.as_ref(), "hosts_in_parallel", 1, 1);
        RolloutSpec {
            strategy,
            batch,
            order,
            drain,
            soak,
            on_failure,
            blue_green,
            hosts_in_parallel,
        }
    }
}
