//! The container options of a `[service.NAME]` (Compose's names): mounts, published ports,
//! restart policy, network, capabilities, limits. Each string is parsed by
//! `model::container` and reported here with its span and a help.

use std::collections::BTreeMap;
use std::str::FromStr;

use super::{ServiceCtx, Validator};
use crate::config::{SpStr, TomlService, TomlUlimit};
use crate::diag::{Diagnostic, closest, list_names};
use crate::model::container::{CAPABILITIES, ULIMIT_NAMES};
use crate::model::{ByteSize, Mount, NetworkMode, Publish, Restart, Ulimit};

/// The options as validated; copied into the `ServiceSpec` by `service`.
pub(super) struct ContainerOptions {
    pub entrypoint: Option<Vec<String>>,
    pub user: Option<String>,
    pub working_dir: Option<String>,
    pub publish: Vec<Publish>,
    pub networks: Vec<String>,
    pub network_mode: NetworkMode,
    pub volumes: Vec<Mount>,
    pub tmpfs: Vec<String>,
    pub restart: Restart,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub privileged: bool,
    pub read_only: bool,
    pub init: bool,
    pub pid: Option<String>,
    pub shm_size: Option<ByteSize>,
    pub sysctls: BTreeMap<String, String>,
    pub ulimits: BTreeMap<String, Ulimit>,
    pub extra_hosts: Vec<String>,
    pub devices: Vec<String>,
}

impl Validator<'_> {
    pub(super) fn container_options(
        &mut self,
        ctx: &ServiceCtx<'_>,
        t: &TomlService,
    ) -> ContainerOptions {
        let here = format!("service `{}`", ctx.name);
        let user = t.user.as_ref().and_then(|u| {
            let s = u.get_ref();
            let ok = !s.is_empty()
                && s.split(':').count() <= 2
                && s.split(':')
                    .all(|p| !p.is_empty() && !p.contains(char::is_whitespace));
            if ok {
                Some(s.clone())
            } else {
                self.err(
                    Diagnostic::at(format!("invalid `user` `{s}`"), u.span())
                        .help("write USER or USER:GROUP, by name or number, e.g. \"1000:1000\""),
                );
                None
            }
        });
        let working_dir = t.working_dir.as_ref().and_then(|w| {
            self.absolute_path(w, "working_dir")
                .then(|| w.get_ref().clone())
        });

        // The probed `port` is published by gantry already (engine-chosen or `host_ports`):
        // a fixed binding of it beside that would be a second way in that no probe watches.
        if let Some(port) = &t.port {
            for p in &t.publish {
                if let Ok(x) = Publish::from_str(p.get_ref())
                    && x.container_port == *port.get_ref()
                    && x.protocol == crate::model::Protocol::Tcp
                {
                    self.err(
                        Diagnostic::at(
                            format!(
                                "{here} publishes its `port` {} in `publish` as well",
                                port.get_ref()
                            ),
                            p.span(),
                        )
                        .label("the probed port")
                        .help(format!(
                            "gantry publishes `port` itself, on a host port the engine chooses; to fix that host port, write `host_ports = {}` instead",
                            x.host_port
                        )),
                    );
                }
            }
        }
        let publish = self.parsed::<Publish>(&t.publish, "port", |raw, _| {
            if raw.contains('-') {
                "one port per entry: write each port of a range as its own entry".to_string()
            } else {
                "e.g. `publish = [\"8125:8125/udp\", \"127.0.0.1:8126:8126\"]`; the probed `port` needs no entry here".to_string()
            }
        });
        let volumes = self.parsed::<Mount>(&t.volumes, "volume", |raw, error| {
            if error.contains("unknown mode") {
                "end with `:ro` to mount read-only, or with nothing (or `:rw`) to mount read-write".to_string()
            } else if error.contains("is relative") {
                format!("write the host path in full, e.g. \"/srv/app/{}\": the config may be applied from another directory", raw.trim_start_matches(['.', '~', '/']))
            } else {
                "e.g. `volumes = [\"cache-data:/data\", \"/var/run/docker.sock:/var/run/docker.sock:ro\"]`".to_string()
            }
        });
        let mut targets: BTreeMap<&str, ()> = BTreeMap::new();
        for (m, raw) in volumes.iter().zip(&t.volumes) {
            if targets.insert(m.target.as_str(), ()).is_some() {
                self.err(
                    Diagnostic::at(
                        format!("{here} mounts two volumes at `{}`", m.target),
                        raw.span(),
                    )
                    .help("each container path takes one mount: remove one, or mount it elsewhere"),
                );
            }
        }
        let mut tmpfs = Vec::new();
        for p in &t.tmpfs {
            let path = p.get_ref().split(':').next().unwrap_or_default();
            if path.starts_with('/') && targets.contains_key(path) {
                self.err(
                    Diagnostic::at(
                        format!("{here} mounts a volume and a `tmpfs` at `{path}`"),
                        p.span(),
                    )
                    .help("each container path takes one mount: remove one, or mount it elsewhere"),
                );
            } else if path.starts_with('/') {
                targets.insert(path, ());
                tmpfs.push(p.get_ref().clone());
            } else {
                self.err(
                    Diagnostic::at(
                        format!(
                            "invalid `tmpfs` `{}`: the path must be absolute",
                            p.get_ref()
                        ),
                        p.span(),
                    )
                    .help("e.g. `tmpfs = [\"/tmp\"]`"),
                );
            }
        }

        let restart = match &t.restart {
            None => Restart::default(),
            Some(r) => match Restart::from_str(r.get_ref()) {
                Ok(r) => r,
                Err(e) => {
                    let mut d = Diagnostic::at(e, r.span()).label("not a restart policy");
                    if let Some(best) = closest(
                        r.get_ref(),
                        ["no", "always", "unless-stopped", "on-failure"],
                    ) {
                        d = d.help(format!("did you mean `{best}`?"));
                    }
                    self.err(d);
                    Restart::default()
                }
            },
        };

        let network_mode = self.keyword(
            t.network_mode.as_ref(),
            "network_mode",
            &["host", "none"],
            |w| match w {
                "host" => Some(NetworkMode::Host),
                "none" => Some(NetworkMode::None),
                _ => None,
            },
            NetworkMode::Project,
        );
        let mut networks: Vec<String> = Vec::new();
        for n in &t.networks {
            let name = n.get_ref();
            if !crate::model::container::valid_volume_name(name) {
                self.err(
                    Diagnostic::at(format!("invalid network name `{name}`"), n.span()).help(
                        "the name of an existing Docker network: letters, digits, `_`, `.` and `-`, starting with a letter or digit",
                    ),
                );
            } else if network_mode != NetworkMode::Project {
                self.err(
                    Diagnostic::at(
                        format!("{here} sets `network_mode` and also joins network `{name}`"),
                        n.span(),
                    )
                    .help("a container on the host's network stack (or none) joins no network"),
                );
            } else if !networks.contains(name) {
                networks.push(name.clone());
            }
        }
        networks.sort();
        if network_mode != NetworkMode::Project
            && let Some(p) = t.publish.first()
        {
            self.err(
                Diagnostic::at(
                    format!("{here} uses `network_mode`, so it publishes no ports"),
                    p.span(),
                )
                .help("on the host's network the process listens on the host's ports directly"),
            );
        }

        let cap_add = self.capabilities(&t.cap_add, "cap_add");
        let cap_drop = self.capabilities(&t.cap_drop, "cap_drop");

        let pid = t.pid.as_ref().and_then(|p| {
            if p.get_ref() == "host" {
                Some("host".to_string())
            } else {
                self.err(
                    Diagnostic::at(format!("invalid `pid` `{}`", p.get_ref()), p.span())
                        .help("the only value is \"host\" (the host's PID namespace)"),
                );
                None
            }
        });
        let shm_size = self.size(t.shm_size.as_ref());

        let sysctls = t
            .sysctls
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect();

        let mut ulimits = BTreeMap::new();
        for (name, value) in &t.ulimits {
            let (soft, hard) = match value.get_ref() {
                TomlUlimit::One(n) => (*n, *n),
                TomlUlimit::Pair { soft, hard } => (*soft, *hard),
            };
            if !ULIMIT_NAMES.contains(&name.as_str()) {
                let mut d = Diagnostic::at(format!("unknown ulimit `{name}`"), value.span()).label(
                    format!("one of {}", list_names(ULIMIT_NAMES.iter().copied())),
                );
                if let Some(best) = closest(name, ULIMIT_NAMES.iter().copied()) {
                    d = d.help(format!("did you mean `{best}`?"));
                }
                self.err(d);
            } else if soft < -1 || hard < -1 {
                self.err(
                    Diagnostic::at(
                        format!("ulimit `{name}`: {} is not a limit", soft.min(hard)),
                        value.span(),
                    )
                    .help("a limit is a number of at least 0, or -1 for unlimited"),
                );
            } else if hard != -1 && (soft > hard || soft == -1) {
                // -1 is unlimited: above any number.
                self.err(
                    Diagnostic::at(
                        format!(
                            "ulimit `{name}`: the soft limit {soft} is above the hard limit {hard}"
                        ),
                        value.span(),
                    )
                    .help(format!(
                        "the soft limit may be at most the hard one, e.g. `{name} = {{ soft = {hard}, hard = {hard} }}`"
                    )),
                );
            } else {
                ulimits.insert(name.clone(), Ulimit { soft, hard });
            }
        }

        let mut extra_hosts = Vec::new();
        for h in &t.extra_hosts {
            let s = h.get_ref();
            // Compose accepts both `name:ip` and `name=ip`; an IPv6 address holds colons.
            let parsed = s
                .split_once('=')
                .or_else(|| s.split_once(':'))
                .filter(|(name, ip)| {
                    !name.is_empty()
                        && (ip.parse::<std::net::IpAddr>().is_ok() || *ip == "host-gateway")
                });
            match parsed {
                Some((name, ip)) => extra_hosts.push(format!("{name}:{ip}")),
                None => self.err(
                    Diagnostic::at(format!("invalid `extra_hosts` entry `{s}`"), h.span()).help(
                        "write NAME:IP, e.g. \"metadata:169.254.169.254\" (or NAME:host-gateway)",
                    ),
                ),
            }
        }

        let mut devices = Vec::new();
        for d in &t.devices {
            let s = d.get_ref();
            let parts: Vec<&str> = s.split(':').collect();
            let ok = match parts.as_slice() {
                [host] => host.starts_with('/'),
                [host, cont] => host.starts_with('/') && cont.starts_with('/'),
                [host, cont, perms] => {
                    host.starts_with('/')
                        && cont.starts_with('/')
                        && !perms.is_empty()
                        && perms.chars().all(|c| matches!(c, 'r' | 'w' | 'm'))
                }
                _ => false,
            };
            if ok {
                let host = parts[0];
                let cont = parts.get(1).copied().unwrap_or(host);
                let perms = parts.get(2).copied().unwrap_or("rwm");
                devices.push(format!("{host}:{cont}:{perms}"));
            } else {
                self.err(
                    Diagnostic::at(format!("invalid device `{s}`"), d.span())
                        .help("write HOST_PATH[:CONTAINER_PATH[:PERMISSIONS]], e.g. \"/dev/fuse\" or \"/dev/sda:/dev/xvda:r\""),
                );
            }
        }

        ContainerOptions {
            entrypoint: t.entrypoint.clone(),
            user,
            working_dir,
            publish,
            networks,
            network_mode,
            volumes,
            tmpfs,
            restart,
            cap_add,
            cap_drop,
            privileged: t.privileged,
            read_only: t.read_only,
            init: t.init,
            pid,
            shm_size,
            sysctls,
            ulimits,
            extra_hosts,
            devices,
        }
    }

    /// Every string of `values` parsed as a `T`; the ones that do not parse are reported,
    /// with the help `help` gives for the string as written.
    fn parsed<T: FromStr<Err = String>>(
        &mut self,
        values: &[SpStr],
        what: &str,
        help: impl Fn(&str, &str) -> String,
    ) -> Vec<T> {
        let mut out = Vec::new();
        for v in values {
            match T::from_str(v.get_ref()) {
                Ok(x) => out.push(x),
                Err(e) => self.err(
                    Diagnostic::at(e.clone(), v.span())
                        .label(format!("not a {what}"))
                        .help(help(v.get_ref(), &e)),
                ),
            }
        }
        out
    }

    fn absolute_path(&mut self, value: &SpStr, key: &str) -> bool {
        if value.get_ref().starts_with('/') {
            return true;
        }
        self.err(
            Diagnostic::at(
                format!(
                    "`{key}` must be an absolute path, found `{}`",
                    value.get_ref()
                ),
                value.span(),
            )
            .help(format!(
                "a path in the container, from `/`, e.g. `{key} = \"/app\"`"
            )),
        );
        false
    }

    /// Capability names, upper case without `CAP_`, sorted and deduplicated.
    fn capabilities(&mut self, values: &[SpStr], key: &str) -> Vec<String> {
        let mut out = Vec::new();
        for v in values {
            let raw = v.get_ref();
            let upper = raw.to_ascii_uppercase();
            let name = upper.strip_prefix("CAP_").unwrap_or(&upper);
            if CAPABILITIES.contains(&name) {
                if !out.iter().any(|c| c == name) {
                    out.push(name.to_string());
                }
            } else {
                let mut d =
                    Diagnostic::at(format!("unknown capability `{raw}` in `{key}`"), v.span())
                        .label("not a Linux capability");
                if let Some(best) = closest(name, CAPABILITIES.iter().copied()) {
                    d = d.help(format!("did you mean `{best}`?"));
                }
                self.err(d);
            }
        }
        out.sort();
        out
    }
}
