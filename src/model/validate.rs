//! From raw `Toml*` values to the [`Model`], reporting every problem at once.
//!
//! Each check adds a diagnostic and carries on with a placeholder, so one run shows the
//! user the whole list. Cross-resource checks (references, cycles, port clashes) run over
//! whatever could be read, and never blame a reference to a resource that exists but had
//! errors of its own.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::str::FromStr;

use toml::Spanned;

use super::*;
use crate::config::{
    Named, RawConfig, SpStr, TomlHealth, TomlLb, TomlPorts, TomlRollout, TomlService, TomlWarmup,
};
use crate::diag::{Diagnostic, closest, list_names};
use crate::graph::{Address, ResourceGraph};

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
    let mut port_claims: Vec<(String, PortRange, Vec<String>, Range<usize>)> = Vec::new();
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
        let (spec, host_ports, hosts) = v.service(&ctx, toml);
        if let (Some(range), Some(sp)) = (host_ports, &toml.host_ports) {
            port_claims.push((named.name.clone(), range, hosts, sp.span()));
        }
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

    if v.diags.is_empty() {
        Ok(Model {
            project,
            keep_previous,
            hosts,
            services,
            lbs,
            lb_hosts,
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

const NAME_HELP: &str =
    "use lower-case letters, digits and `-` (at most 40 characters, starting with a letter)";

fn valid_name(name: &str) -> bool {
    name.len() <= 40
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-')
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
            self.err(
                Diagnostic::at(format!("invalid {what} name `{name}`"), span.clone())
                    .help(NAME_HELP),
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

    fn hosts(&mut self, hosts: &[crate::config::TomlHost]) -> Vec<Host> {
        if hosts.is_empty() {
            return vec![Host {
                name: LOCAL_HOST.into(),
                docker: DEFAULT_DOCKER.into(),
                address: "127.0.0.1".into(),
                tls: None,
            }];
        }
        let mut seen: BTreeMap<String, Range<usize>> = BTreeMap::new();
        let mut out = Vec::new();
        for h in hosts {
            let name = h.name.get_ref().clone();
            if !valid_name(&name) {
                self.err(
                    Diagnostic::at(format!("invalid host name `{name}`"), h.name.span())
                        .help(NAME_HELP),
                );
            }
            if let Some(first) = seen.get(&name) {
                self.err(
                    Diagnostic::at(format!("host `{name}` is declared twice"), h.name.span())
                        .label("second declaration")
                        .related(first.clone(), "first declared here"),
                );
            }
            seen.insert(name.clone(), h.name.span());
            let docker = h
                .docker
                .as_ref()
                .map_or(DEFAULT_DOCKER.to_string(), |d| d.get_ref().clone());
            if let Some(d) = &h.docker {
                let ok = ["unix://", "tcp://", "https://"]
                    .iter()
                    .any(|p| d.get_ref().starts_with(p) && d.get_ref().len() > p.len());
                if d.get_ref().starts_with("ssh://") {
                    self.err(
                        Diagnostic::at(format!("`ssh://` Docker endpoints are not supported yet: `{}`", d.get_ref()), d.span())
                            .help("expose the engine on `tcp://HOST:2376` with `tls` (ca, cert, key), or run gantry on that host with `unix:///var/run/docker.sock`"),
                    );
                } else if !ok {
                    self.err(
                        Diagnostic::at(
                            format!("invalid Docker endpoint `{}`", d.get_ref()),
                            d.span(),
                        )
                        .help(
                            "use `unix:///var/run/docker.sock` or `tcp://HOST:2376` (with `tls`)",
                        ),
                    );
                }
                if d.get_ref().starts_with("unix://") && h.tls.is_some() {
                    self.err(
                        Diagnostic::at(
                            "`tls` applies to `tcp://` endpoints, not to a unix socket",
                            d.span(),
                        )
                        .help("remove `tls`, or use `tcp://HOST:2376`"),
                    );
                }
                if d.get_ref().starts_with("tcp://")
                    && h.tls.is_none()
                    && !d.get_ref().contains("127.0.0.1")
                    && !d.get_ref().contains("localhost")
                {
                    self.err(
                        Diagnostic::at("a remote `tcp://` Docker endpoint needs `tls` (ca, cert, key)", d.span())
                            .help("an unauthenticated Docker socket on the network is root access for anyone who reaches it"),
                    );
                }
            }
            let address = match &h.address {
                Some(a) => {
                    if a.get_ref().parse::<std::net::IpAddr>().is_err() && a.get_ref().is_empty() {
                        self.err(Diagnostic::at("`address` must not be empty", a.span()));
                    }
                    a.get_ref().clone()
                }
                None => "127.0.0.1".to_string(),
            };
            out.push(Host {
                name,
                docker,
                address,
                tls: h.tls.as_ref().map(|t| Tls {
                    ca: t.ca.clone(),
                    cert: t.cert.clone(),
                    key: t.key.clone(),
                }),
            });
        }
        out
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

    /// The spec (when valid), and its host ports and hosts (even when not, so that port
    /// clashes with other services are still found).
    fn service(
        &mut self,
        ctx: &ServiceCtx<'_>,
        t: &TomlService,
    ) -> (Option<ServiceSpec>, Option<PortRange>, Vec<String>) {
        let errors_before = self.diags.len();
        let here = format!("service `{}`", ctx.name);

        let image = t.image.get_ref();
        match ImageRef::from_str(image) {
            Err(e) => self.err(Diagnostic::at(e, t.image.span()).label("not an image reference")),
            Ok(r) if !t.allow_mutable_tag => {
                if r.digest.is_none() && r.tag.is_none() {
                    self.err(
                        Diagnostic::at(format!("image `{image}` has no tag: it means `latest`, which moves"), t.image.span())
                            .label("no tag or digest")
                            .help("pin an immutable tag (e.g. the git sha) or a digest; or set `allow_mutable_tag = true` to accept the risk"),
                    );
                } else if r.digest.is_none() && r.tag.as_deref() == Some("latest") {
                    self.err(
                        Diagnostic::at(format!("image `{image}` uses the moving tag `latest`"), t.image.span())
                            .label("mutable tag")
                            .help("pin an immutable tag (e.g. the git sha) or a digest; or set `allow_mutable_tag = true` to accept the risk"),
                    );
                }
            }
            Ok(_) => {}
        }

        let runtime = self.keyword(
            t.runtime.as_ref(),
            "runtime",
            Runtime::WORDS,
            Runtime::parse_word,
            Runtime::Container,
        );
        let replicas = self.count(t.replicas.as_ref(), "replicas", 1, 1);
        let command = self.command(t.command.as_ref(), "command", &ctx.span);
        let port = t.port.as_ref().and_then(|p| {
            if *p.get_ref() == 0 {
                self.err(Diagnostic::at(
                    "`port` must be between 1 and 65535",
                    p.span(),
                ));
                None
            } else {
                Some(*p.get_ref())
            }
        });

        for key in t.env.keys() {
            if !valid_env_name(key) {
                self.err(
                    Diagnostic::at(
                        format!("invalid environment variable name `{key}` in {here}"),
                        ctx.span.clone(),
                    )
                    .help("use letters, digits and `_`, not starting with a digit"),
                );
            }
        }
        let mut secret_env: Vec<String> = Vec::new();
        for s in &t.secret_env {
            let name = s.get_ref();
            if !valid_env_name(name) {
                self.err(Diagnostic::at(
                    format!("invalid environment variable name `{name}`"),
                    s.span(),
                ));
            } else if t.env.contains_key(name) {
                self.err(Diagnostic::at(format!("`{name}` is both in `env` (shown in plans) and in `secret_env`"), s.span()).help("a secret must not also have a plain value in the config; remove it from `env`"));
            } else if secret_env.contains(name) {
                self.err(Diagnostic::at(
                    format!("`{name}` is listed twice in `secret_env`"),
                    s.span(),
                ));
            } else {
                secret_env.push(name.clone());
            }
        }
        secret_env.sort();

        let env_file = t
            .env_file
            .as_ref()
            .and_then(|f| match self.files.env_file(f.get_ref()) {
                Ok(facts) => Some(EnvFileSpec {
                    path: f.get_ref().clone(),
                    keys: facts.keys,
                    sha256: facts.sha256,
                }),
                Err(e) => {
                    self.err(
                        Diagnostic::at(format!("env_file `{}`: {e}", f.get_ref()), f.span())
                            .label("cannot be read")
                            .help("paths are relative to the config file's directory"),
                    );
                    None
                }
            });

        let mut depends_on = Vec::new();
        for dep in &t.depends_on {
            if dep.get_ref() == ctx.name {
                continue; // reported as a cycle
            }
            if depends_on.contains(dep.get_ref()) {
                self.err(Diagnostic::at(
                    format!("`{}` is listed twice in `depends_on`", dep.get_ref()),
                    dep.span(),
                ));
                continue;
            }
            if self.reference("service", dep, ctx.services, &here) {
                depends_on.push(dep.get_ref().clone());
            }
        }
        depends_on.sort();

        let hosts = match &t.hosts {
            None => ctx.hosts.iter().map(|h| h.to_string()).collect(),
            Some(list) => {
                if list.is_empty() {
                    self.err(
                        Diagnostic::at(
                            format!("{here} runs on no host: `hosts` is empty"),
                            ctx.span.clone(),
                        )
                        .help("remove `hosts` to run on every host"),
                    );
                }
                let mut hosts: Vec<String> = Vec::new();
                for h in list {
                    if self.reference("host", h, ctx.hosts, &here) && !hosts.contains(h.get_ref()) {
                        hosts.push(h.get_ref().clone());
                    }
                }
                hosts.sort();
                hosts
            }
        };

        let stop_grace_period =
            self.duration(t.stop_grace_period.as_ref(), Duration::from_secs(10));

        let resources = match &t.resources {
            None => Resources::default(),
            Some(r) => {
                let cpus = r.cpus.as_ref().and_then(|c| {
                    let v = *c.get_ref();
                    if v > 0.0 && v.is_finite() {
                        Some(v)
                    } else {
                        self.err(Diagnostic::at(
                            format!("`cpus` must be more than 0, found {v}"),
                            c.span(),
                        ));
                        None
                    }
                });
                let memory = self.size(r.memory.as_ref());
                if let (Some(m), Some(s)) = (memory, &r.memory)
                    && m.0 < 6 * 1024 * 1024
                {
                    self.err(Diagnostic::at(
                        format!("`memory` of {m} is below Docker's minimum of 6m"),
                        s.span(),
                    ));
                }
                Resources { cpus, memory }
            }
        };

        let log = match &t.log {
            None => LogSpec::default(),
            Some(l) => LogSpec {
                max_size: self.size(l.max_size.as_ref()),
                max_files: l
                    .max_files
                    .as_ref()
                    .map(|_| self.count(l.max_files.as_ref(), "max_files", 1, 1)),
            },
        };

        let mut lb: Vec<String> = Vec::new();
        for name in &t.lb {
            if self.reference("load balancer", name, ctx.lbs, &here) && !lb.contains(name.get_ref())
            {
                lb.push(name.get_ref().clone());
            }
        }
        lb.sort();
        // A port that was set but unreadable is already reported: do not also call it missing.
        let has_port = port.is_some() || ctx.partial;
        if !t.lb.is_empty() && !has_port {
            self.err(
                Diagnostic::at(
                    format!("{here} is behind a load balancer but has no `port`"),
                    t.lb[0].span(),
                )
                .help("set `port` to the container port the load balancer should send traffic to"),
            );
        }

        let health = t.health.as_ref().map(|h| self.health(ctx, h, has_port));
        let warmup = t.warmup.as_ref().map(|w| self.warmup(w, has_port, &here));
        let rollout = self.rollout(t.rollout.as_ref(), replicas, &here, &ctx.span);
        if let Some(preview) = t.rollout.as_ref().and_then(|r| r.preview_lb.as_ref())
            && self.reference("load balancer", preview, ctx.lbs, &here)
            && t.lb.iter().any(|l| l.get_ref() == preview.get_ref())
        {
            self.err(
                Diagnostic::at(
                    format!(
                        "`preview_lb` `{}` is also in `lb` of {here}: the preview must be its own address",
                        preview.get_ref()
                    ),
                    preview.span(),
                )
                .label("users' traffic goes through this one")
                .help("declare another [lb.NAME] (its own nginx upstream or HAProxy backend) for the preview"),
            );
        }

        if runtime == Runtime::Swarm {
            self.swarm(ctx, t, &hosts, &rollout);
        }
        let host_ports = t
            .host_ports
            .as_ref()
            .and_then(|hp| self.host_ports(hp, has_port, replicas, &rollout, runtime, &here));

        if self.diags.len() > errors_before {
            return (None, host_ports, hosts);
        }
        let spec = ServiceSpec {
            image: image.clone(),
            runtime,
            replicas,
            command,
            port,
            host_ports,
            env: t.env.clone(),
            env_file,
            secret_env,
            depends_on,
            hosts: hosts.clone(),
            stop_grace_period,
            resources,
            labels: t.labels.clone(),
            log,
            lb,
            health,
            warmup,
            rollout,
        };
        (Some(spec), host_ports, hosts)
    }

    fn host_ports(
        &mut self,
        hp: &Spanned<TomlPorts>,
        has_port: bool,
        replicas: u32,
        rollout: &RolloutSpec,
        runtime: Runtime,
        here: &str,
    ) -> Option<PortRange> {
        let span = hp.span();
        let range = match hp.get_ref() {
            TomlPorts::One(p) => PortRange { start: *p, end: *p },
            TomlPorts::Range(s) => {
                let parsed = s.split_once('-').and_then(|(a, b)| {
                    Some((a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?))
                });
                match parsed {
                    Some((a, b)) if a <= b => PortRange { start: a, end: b },
                    _ => {
                        self.err(Diagnostic::at(format!("invalid port range `{s}`"), span).help("write a range as \"18080-18089\" (inclusive), or a single port as a number"));
                        return None;
                    }
                }
            }
        };
        if range.start == 0 {
            self.err(Diagnostic::at(
                "host port 0 is not a port; leave `host_ports` out to let the engine choose",
                span,
            ));
            return None;
        }
        if !has_port {
            self.err(Diagnostic::at(
                format!("{here} publishes `host_ports` but has no container `port`"),
                span,
            ));
            return None;
        }
        if runtime == Runtime::Swarm {
            if range.len() != 1 {
                self.err(
                    Diagnostic::at(format!("{here} runs on Docker Swarm, which publishes one port for all its replicas: `host_ports` must be one port, found {range}"), span)
                        .label("a range")
                        .help("Swarm's routing mesh answers on this one port on every node and spreads the requests over the replicas; e.g. `host_ports = 8080`"),
                );
                return None;
            }
            return Some(range);
        }
        // During a rollout the new replicas run beside the old ones: the range must hold both.
        let surge = match (rollout.strategy, rollout.order) {
            (Strategy::BlueGreen, _) => replicas,
            (Strategy::Rolling, Order::StartFirst) => rollout.batch,
            (Strategy::Rolling, Order::StopFirst) => 0,
        };
        let needed = replicas + surge;
        if range.len() < needed {
            let why = if surge > 0 {
                format!(
                    "{replicas} replicas + {surge} started beside them during a {} rollout",
                    if rollout.strategy == Strategy::BlueGreen {
                        "blue-green".to_string()
                    } else {
                        format!("start-first batch-{}", rollout.batch)
                    }
                )
            } else {
                format!("{replicas} replicas")
            };
            self.err(
                Diagnostic::at(format!("host_ports {range} has {} port(s) but {here} needs {needed}", range.len()), span)
                    .label(why)
                    .help("widen the range, or use `order = \"stop-first\"`, or leave `host_ports` out to let the engine choose free ports"),
            );
            return None;
        }
        Some(range)
    }

    /// What a Swarm service cannot do: run on several managers, probe its replicas from the
    /// host, or release blue-green.
    fn swarm(
        &mut self,
        ctx: &ServiceCtx<'_>,
        t: &TomlService,
        hosts: &[String],
        rollout: &RolloutSpec,
    ) {
        let here = format!("service `{}`", ctx.name);
        match &t.hosts {
            Some(list) if list.len() > 1 => self.err(
                Diagnostic::at(
                    format!("{here} runs on Docker Swarm and names {} hosts: a Swarm service is deployed through ONE manager", list.len()),
                    list[1].span(),
                )
                .label("a second host")
                .help("keep the manager only; Swarm places the replicas on the nodes of its cluster"),
            ),
            None if hosts.len() > 1 => self.err(
                Diagnostic::at(
                    format!("{here} runs on Docker Swarm but names no manager, and {} hosts are declared", hosts.len()),
                    ctx.span.clone(),
                )
                .help(format!("set `hosts = [\"NAME\"]` to the host whose engine is a Swarm manager (one of {})", list_names(hosts.iter().map(String::as_str)))),
            ),
            _ => {}
        }
        if let Some(p) = t.health.as_ref().and_then(|h| h.http.as_ref()) {
            self.err(
                Diagnostic::at(
                    format!("{here} runs on Docker Swarm, which runs health checks inside the container: `http` cannot be used"),
                    p.span(),
                )
                .label("a probe from the host")
                .help("use `command`, e.g. `command = [\"/app\", \"--healthcheck\"]` (exit 0 = healthy); Swarm replaces a replica only once its successor is healthy"),
            );
        }
        if rollout.strategy == Strategy::BlueGreen
            && let Some(s) = t.rollout.as_ref().and_then(|r| r.strategy.as_ref())
        {
            self.err(
                Diagnostic::at(
                    format!("{here} runs on Docker Swarm, which rolls services: `strategy = \"blue-green\"` is not available"),
                    s.span(),
                )
                .help("use `strategy = \"rolling\"` (with `order` and `batch`), or `runtime = \"container\"` for blue-green"),
            );
        }
    }

    fn health(&mut self, ctx: &ServiceCtx<'_>, h: &TomlHealth, has_port: bool) -> HealthSpec {
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
                .help("e.g. `http = \"/healthz\"`"),
            ),
            (Some(p), Some(_)) => self.err(Diagnostic::at(
                "`health` has both `http` and `command`: choose one",
                p.span(),
            )),
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

    fn warmup(&mut self, w: &TomlWarmup, has_port: bool, here: &str) -> WarmupSpec {
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

    fn rollout(
        &mut self,
        r: Option<&TomlRollout>,
        replicas: u32,
        here: &str,
        span: &Range<usize>,
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
        let order = self.keyword(
            r.order.as_ref(),
            "order",
            Order::WORDS,
            Order::parse_word,
            Order::StartFirst,
        );
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

    fn lb(&mut self, named: &Named<TomlLb>, t: &TomlLb) -> Option<LbSpec> {
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
        let used: [(&str, bool, LbKind); 14] = [
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
                LbSpec::Nginx {
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

    fn lb_members(&mut self, lbs: &[Named<TomlLb>], services: &[Named<TomlService>]) {
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

    fn shared_upstream_files(&mut self, lbs: &[Named<TomlLb>]) {
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

    fn port_clashes(&mut self, claims: &[(String, PortRange, Vec<String>, Range<usize>)]) {
        // A sweep over the ranges sorted by start: only ranges still open can overlap, so
        // 10,000 services with ports are not 5 * 10^7 comparisons. Of an overlapping pair,
        // the later declaration in the file is blamed.
        let mut order: Vec<usize> = (0..claims.len()).collect();
        order.sort_by_key(|&i| (claims[i].1.start, claims[i].3.start));
        let mut open: Vec<usize> = Vec::new();
        let mut pairs: Vec<(usize, usize)> = Vec::new();
        for &i in &order {
            open.retain(|&j| claims[j].1.end >= claims[i].1.start);
            for &j in &open {
                let (later, earlier) = if claims[i].3.start > claims[j].3.start {
                    (i, j)
                } else {
                    (j, i)
                };
                pairs.push((later, earlier));
            }
            open.push(i);
        }
        pairs.sort_by_key(|&(l, e)| (claims[l].3.start, claims[e].3.start));
        for (l, e) in pairs {
            let ((a, ra, ha, sa), (b, rb, hb, sb)) = (&claims[l], &claims[e]);
            {
                let shared: BTreeSet<&String> = ha.iter().filter(|h| hb.contains(h)).collect();
                if !shared.is_empty() {
                    self.err(
                        Diagnostic::at(format!("duplicate host ports: service `{a}` ({ra}) and service `{b}` ({rb}) overlap"), sa.clone())
                            .label(format!("overlaps `{b}`"))
                            .related(sb.clone(), format!("`{b}` claims {rb} here"))
                            .help(format!("both run on {}; give each service its own range", list_names(shared.iter().map(|s| s.as_str())))),
                    );
                }
            }
        }
    }

    fn cycles(&mut self, dep_spans: &BTreeMap<(String, String), Range<usize>>) {
        // From the raw spans, so that self-dependencies and services with other errors count.
        let edges = dep_spans
            .keys()
            .map(|(svc, dep)| (Address::service(dep), Address::service(svc)));
        let nodes = dep_spans
            .keys()
            .flat_map(|(svc, dep)| [Address::service(svc), Address::service(dep)]);
        let graph = ResourceGraph::new(nodes, edges);
        for cycle in graph.cycles() {
            let names: Vec<&str> = cycle.iter().map(|a| a.name.as_str()).collect();
            let span = dep_spans
                .get(&(names[0].to_string(), names[1].to_string()))
                .cloned()
                .unwrap_or(0..0);
            let message = if names.len() == 2 {
                format!("service `{}` depends on itself", names[0])
            } else {
                format!("dependency cycle: {}", names.join(" -> "))
            };
            self.err(Diagnostic::at(message, span).label("this dependency closes the cycle").help("a service cannot wait for itself to be healthy: remove one `depends_on` entry of the cycle"));
        }
    }
}
