//! One `[service.NAME]` on its own: image, ports, environment, references, Swarm limits.

use std::str::FromStr;

use toml::Spanned;

use super::container::ContainerOptions;
use super::cross::PortClaim;
use super::{ServiceCtx, Validator, valid_env_name};
use crate::config::{TomlPorts, TomlService};
use crate::diag::{Diagnostic, list_names};
use crate::model::{
    Duration, EnvFileSpec, ImageRef, LogSpec, NetworkMode, Order, PortRange, Protocol, Publish,
    Resources, RolloutSpec, Runtime, ServiceSpec, StopFirstReason, Strategy,
};

impl Validator<'_> {
    /// The spec (when valid), and the host ports it claims (even when not, so that port
    /// clashes with other services are still found).
    pub(super) fn service(
        &mut self,
        ctx: &ServiceCtx<'_>,
        t: &TomlService,
    ) -> (Option<ServiceSpec>, Vec<PortClaim>) {
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
        let options = self.container_options(ctx, t);
        let stop_first = StopFirstReason::of(
            runtime,
            &options.volumes,
            &options.publish,
            options.network_mode,
            port,
        );
        let rollout = self.rollout(
            t.rollout.as_ref(),
            replicas,
            &here,
            &ctx.span,
            stop_first.as_ref(),
        );
        if let Some(reason) = &stop_first {
            self.one_copy(t, &here, reason, replicas);
        }
        self.network_mode_ports(t, &options, &here);
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
            .filter(|_| options.network_mode != NetworkMode::Host)
            .and_then(|hp| self.host_ports(hp, has_port, replicas, &rollout, runtime, &here));

        let claims = port_claims(ctx.name, t, host_ports, port, options.network_mode, &hosts);
        if self.diags.len() > errors_before {
            return (None, claims);
        }
        let spec = ServiceSpec {
            image: image.clone(),
            runtime,
            replicas,
            entrypoint: options.entrypoint,
            command,
            user: options.user,
            working_dir: options.working_dir,
            port,
            host_ports,
            publish: options.publish,
            env: t.env.clone(),
            env_file,
            secret_env,
            depends_on,
            hosts: hosts.clone(),
            networks: options.networks,
            network_mode: options.network_mode,
            volumes: options.volumes,
            tmpfs: options.tmpfs,
            restart: options.restart,
            stop_grace_period,
            resources,
            labels: t.labels.clone(),
            log,
            cap_add: options.cap_add,
            cap_drop: options.cap_drop,
            privileged: options.privileged,
            read_only: options.read_only,
            init: options.init,
            pid: options.pid,
            shm_size: options.shm_size,
            sysctls: options.sysctls,
            ulimits: options.ulimits,
            extra_hosts: options.extra_hosts,
            devices: options.devices,
            lb,
            health,
            warmup,
            rollout,
        };
        (Some(spec), claims)
    }

    /// A fixed host port (of `publish`, or `port` on the host's network) allows one replica
    /// per host: more are refused. A read-write volume does not limit `replicas` (they share
    /// it, as the user asked); it only rules out rolling two copies of one replica at once.
    fn one_copy(&mut self, t: &TomlService, here: &str, reason: &StopFirstReason, replicas: u32) {
        if replicas <= 1 || matches!(reason, StopFirstReason::ReadWriteVolume { .. }) {
            return;
        }
        let Some(r) = &t.replicas else { return };
        self.err(
            Diagnostic::at(
                format!(
                    "{here} {}: {}",
                    reason_subject(reason),
                    reason.consequence()
                ),
                r.span(),
            )
            .label(format!("{replicas} replicas on each host"))
            .help(scale_help(reason)),
        );
    }

    /// `network_mode` host or none, and the ports the service would publish.
    fn network_mode_ports(&mut self, t: &TomlService, options: &ContainerOptions, here: &str) {
        match options.network_mode {
            NetworkMode::Project => {}
            NetworkMode::Host => {
                if let Some(hp) = &t.host_ports {
                    self.err(
                        Diagnostic::at(
                            format!("{here} runs on the host's network: it publishes no `host_ports`"),
                            hp.span(),
                        )
                        .label("no port mapping on the host's network")
                        .help("on the host's network the process listens on the host's port `port` directly; remove `host_ports`, or leave `network_mode` out"),
                    );
                }
            }
            NetworkMode::None => {
                if let Some(p) = &t.port {
                    self.err(
                        Diagnostic::at(
                            format!("{here} has `network_mode = \"none\"`: nothing can reach its `port`"),
                            p.span(),
                        )
                        .label("unreachable")
                        .help("remove `port` (and `lb`, HTTP health checks and warm-up, which need it), or leave `network_mode` out"),
                    );
                }
            }
        }
    }

    pub(super) fn host_ports(
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
    /// host, release blue-green, or take a container option its spec has no field for
    /// (`swarm_options`).
    pub(super) fn swarm(
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
        self.swarm_options(ctx, t);
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
}

/// `mounts the named volume `cache-data` read-write`, as the subject of a sentence.
pub(super) fn reason_subject(reason: &StopFirstReason) -> String {
    match reason {
        StopFirstReason::ReadWriteVolume { volume } => {
            format!("mounts the named volume `{volume}` read-write")
        }
        StopFirstReason::FixedHostPort { publish } => {
            format!("publishes the fixed host port `{publish}`")
        }
        StopFirstReason::HostNetwork { port } => {
            format!("runs on the host's network and listens on its port {port}")
        }
    }
}

/// How to scale (or roll start-first) a service that has a fixed host port.
pub(super) fn scale_help(reason: &StopFirstReason) -> String {
    let instead = match reason {
        StopFirstReason::HostNetwork { .. } => {
            "to scale, leave `network_mode` out: the engine (or `host_ports`) then gives each replica its own host port"
        }
        _ => {
            "to scale, leave the port out of `publish` and set it as `port`: the engine (or `host_ports`) then gives each replica its own host port"
        }
    };
    format!("use `order = \"stop-first\"` (the default here) and `replicas = 1`; {instead}")
}

/// The host ports a service binds on its hosts, for the clash check across services.
fn port_claims(
    name: &str,
    t: &TomlService,
    host_ports: Option<PortRange>,
    port: Option<u16>,
    network_mode: NetworkMode,
    hosts: &[String],
) -> Vec<PortClaim> {
    let claim = |range, protocol, ip, span| PortClaim {
        service: name.to_string(),
        range,
        protocol,
        ip,
        hosts: hosts.to_vec(),
        span,
    };
    let mut out = Vec::new();
    if let (Some(range), Some(hp)) = (host_ports, &t.host_ports) {
        out.push(claim(range, Protocol::Tcp, None, hp.span()));
    }
    for p in &t.publish {
        if let Ok(p2) = Publish::from_str(p.get_ref()) {
            let range = PortRange {
                start: p2.host_port,
                end: p2.host_port,
            };
            out.push(claim(range, p2.protocol, p2.host_ip, p.span()));
        }
    }
    if let (NetworkMode::Host, Some(port), Some(p)) = (network_mode, port, &t.port) {
        let range = PortRange {
            start: port,
            end: port,
        };
        out.push(claim(range, Protocol::Tcp, None, p.span()));
    }
    out
}
