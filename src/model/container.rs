//! The container options of a service, in Compose's words: mounts, published ports, restart
//! policy, ulimits, network mode.
//!
//! Each value that a user writes as a string (`"cache-data:/data:ro"`, `"8125:8125/udp"`,
//! `"on-failure:3"`) is parsed here into a typed value and written back in one canonical form,
//! so that plans show what the user wrote and two spellings of the same thing compare equal.
//! Parsing errors are sentences in the user's words; `validate` attaches the span and a help.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Serialises a type through its `Display` and `FromStr`, as a JSON string.
macro_rules! string_form {
    ($ty:ty) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                String::deserialize(d)?
                    .parse()
                    .map_err(serde::de::Error::custom)
            }
        }
    };
}

/// What a mount's source is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum MountSource {
    /// A named volume of the project: the engine's volume is `<project>_<name>`.
    Volume(String),
    /// An absolute path on the host.
    Bind(String),
}

/// One entry of `volumes`: `"cache-data:/data"`, `"/var/run/docker.sock:/var/run/docker.sock:ro"`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, JsonSchema)]
#[schemars(with = "String")]
pub struct Mount {
    pub source: MountSource,
    /// Absolute path in the container.
    pub target: String,
    pub read_only: bool,
}

impl Mount {
    /// The named volume, if the source is one.
    pub fn volume(&self) -> Option<&str> {
        match &self.source {
            MountSource::Volume(v) => Some(v),
            MountSource::Bind(_) => None,
        }
    }
}

/// A volume name as Docker accepts it: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
pub fn valid_volume_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

impl FromStr for Mount {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let (source, target, mode) = match parts.as_slice() {
            [source, target] => (*source, *target, None),
            [source, target, mode] => (*source, *target, Some(*mode)),
            _ => {
                return Err(format!(
                    "invalid volume `{s}`: write SOURCE:TARGET[:ro], e.g. \"cache-data:/data\" or \"/srv/logs:/logs:ro\""
                ));
            }
        };
        let read_only = match mode {
            None | Some("rw") => false,
            Some("ro") => true,
            Some(other) => {
                return Err(format!(
                    "invalid volume `{s}`: unknown mode `{other}` (use `ro` or `rw`)"
                ));
            }
        };
        if !target.starts_with('/') {
            return Err(format!(
                "invalid volume `{s}`: the container path `{target}` must be absolute"
            ));
        }
        let source = if source.starts_with('/') {
            MountSource::Bind(source.to_string())
        } else if source.starts_with('.') || source.starts_with('~') || source.contains('/') {
            return Err(format!(
                "invalid volume `{s}`: the host path `{source}` is relative; bind mounts take absolute host paths only"
            ));
        } else if valid_volume_name(source) {
            MountSource::Volume(source.to_string())
        } else {
            return Err(format!(
                "invalid volume `{s}`: `{source}` is neither an absolute host path nor a volume name (letters, digits, `_`, `.`, `-`)"
            ));
        };
        Ok(Mount {
            source,
            target: target.to_string(),
            read_only,
        })
    }
}

impl fmt::Display for Mount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            MountSource::Volume(v) => write!(f, "{v}:{}", self.target)?,
            MountSource::Bind(p) => write!(f, "{p}:{}", self.target)?,
        }
        if self.read_only {
            f.write_str(":ro")?;
        }
        Ok(())
    }
}
string_form!(Mount);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn word(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// One entry of `publish`: a fixed host port, `"[HOST_IP:]HOST_PORT:CONTAINER_PORT[/udp]"`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, JsonSchema)]
#[schemars(with = "String")]
pub struct Publish {
    /// Address the host port is bound to; `None`: every address (as `docker run -p`).
    pub host_ip: Option<String>,
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: Protocol,
}

impl FromStr for Publish {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let usage = || {
            format!(
                "invalid port `{s}`: write [HOST_IP:]HOST_PORT:CONTAINER_PORT[/udp], e.g. \"8125:8125/udp\" or \"127.0.0.1:8126:8126\""
            )
        };
        let (rest, protocol) = match s.rsplit_once('/') {
            Some((rest, "tcp")) => (rest, Protocol::Tcp),
            Some((rest, "udp")) => (rest, Protocol::Udp),
            Some((_, other)) => {
                return Err(format!(
                    "invalid port `{s}`: unknown protocol `{other}` (use `tcp` or `udp`)"
                ));
            }
            None => (s, Protocol::Tcp),
        };
        // An IPv6 host address is written in brackets: "[::1]:8126:8126".
        let (host_ip, ports) = if let Some(after) = rest.strip_prefix('[') {
            let (ip, ports) = after.split_once("]:").ok_or_else(usage)?;
            (Some(ip.to_string()), ports)
        } else {
            match rest.matches(':').count() {
                1 => (None, rest),
                2 => {
                    let (ip, ports) = rest.split_once(':').ok_or_else(usage)?;
                    (Some(ip.to_string()), ports)
                }
                _ => return Err(usage()),
            }
        };
        if let Some(ip) = &host_ip
            && ip.parse::<std::net::IpAddr>().is_err()
        {
            return Err(format!("invalid port `{s}`: `{ip}` is not an IP address"));
        }
        let (host, container) = ports.split_once(':').ok_or_else(usage)?;
        let port = |p: &str| -> Result<u16, String> {
            match p.parse::<u16>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(format!(
                    "invalid port `{s}`: `{p}` is not a port (1-65535); ranges are not supported"
                )),
            }
        };
        Ok(Publish {
            host_ip,
            host_port: port(host)?,
            container_port: port(container)?,
            protocol,
        })
    }
}

impl fmt::Display for Publish {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host_ip {
            Some(ip) if ip.contains(':') => write!(f, "[{ip}]:")?,
            Some(ip) => write!(f, "{ip}:")?,
            None => {}
        }
        write!(f, "{}:{}", self.host_port, self.container_port)?;
        if self.protocol == Protocol::Udp {
            f.write_str("/udp")?;
        }
        Ok(())
    }
}
string_form!(Publish);

/// `restart`: what the engine does when a replica's process exits, and after the engine
/// itself restarts. Replicas gantry keeps stopped for a rollback are set to `no` while kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, JsonSchema)]
#[schemars(with = "String")]
pub enum Restart {
    No,
    Always,
    /// Restarted unless a person (or gantry) stopped it, also across engine restarts.
    #[default]
    UnlessStopped,
    /// Restarted when it exits non-zero, at most this many times (`None`: no limit).
    OnFailure(Option<u32>),
}

impl Restart {
    pub fn is_default(&self) -> bool {
        *self == Restart::UnlessStopped
    }
    /// Docker's name of the policy (`docker run --restart` without the count).
    pub fn docker_name(&self) -> &'static str {
        match self {
            Restart::No => "no",
            Restart::Always => "always",
            Restart::UnlessStopped => "unless-stopped",
            Restart::OnFailure(_) => "on-failure",
        }
    }
}

impl FromStr for Restart {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "no" => Ok(Restart::No),
            "always" => Ok(Restart::Always),
            "unless-stopped" => Ok(Restart::UnlessStopped),
            "on-failure" => Ok(Restart::OnFailure(None)),
            _ => match s.strip_prefix("on-failure:") {
                Some(n) => match n.parse::<u32>() {
                    Ok(n) if n > 0 => Ok(Restart::OnFailure(Some(n))),
                    _ => Err(format!(
                        "invalid restart policy `{s}`: the count after `on-failure:` must be a positive number"
                    )),
                },
                None => Err(format!(
                    "invalid restart policy `{s}`: use \"unless-stopped\" (the default), \"always\", \"on-failure\", \"on-failure:N\" or \"no\""
                )),
            },
        }
    }
}

impl fmt::Display for Restart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Restart::OnFailure(Some(n)) => write!(f, "on-failure:{n}"),
            other => f.write_str(other.docker_name()),
        }
    }
}
string_form!(Restart);

/// One ulimit: a soft and a hard limit (equal when written as one number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Ulimit {
    pub soft: i64,
    pub hard: i64,
}

/// The ulimit names Docker knows (`docker run --ulimit`), without the `RLIMIT_` prefix.
pub const ULIMIT_NAMES: &[&str] = &[
    "as",
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

/// Linux capabilities, as `cap_add`/`cap_drop` take them (without `CAP_`; `ALL` too).
pub const CAPABILITIES: &[&str] = &[
    "ALL",
    "AUDIT_CONTROL",
    "AUDIT_READ",
    "AUDIT_WRITE",
    "BLOCK_SUSPEND",
    "BPF",
    "CHECKPOINT_RESTORE",
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "IPC_LOCK",
    "IPC_OWNER",
    "KILL",
    "LEASE",
    "LINUX_IMMUTABLE",
    "MAC_ADMIN",
    "MAC_OVERRIDE",
    "MKNOD",
    "NET_ADMIN",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_RAW",
    "PERFMON",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_CHROOT",
    "SYS_MODULE",
    "SYS_NICE",
    "SYS_PACCT",
    "SYS_PTRACE",
    "SYS_RAWIO",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "SYSLOG",
    "WAKE_ALARM",
];

/// `network_mode`: which network stack a replica gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum NetworkMode {
    /// The project's network (`<project>`), the service name as DNS alias, plus `networks`.
    #[default]
    Project,
    /// The host's network stack: no network of gantry's, no published ports.
    Host,
    /// No network at all (a loopback interface only).
    None,
}

impl NetworkMode {
    pub fn is_project(&self) -> bool {
        *self == NetworkMode::Project
    }
}

/// Why a service must never run two copies of one replica at once, and so rolls stop-first:
/// the old copy stops before the new one starts. Validation refuses an explicit
/// `order = "start-first"` or a blue-green rollout for such a service and makes stop-first
/// its default; plans say which reason applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "because", rename_all = "kebab-case", deny_unknown_fields)]
pub enum StopFirstReason {
    /// A named volume mounted read-write: two copies of the process would write it at once.
    ReadWriteVolume { volume: String },
    /// A fixed host port of `publish`: one container at a time can bind it on a host.
    FixedHostPort { publish: String },
    /// `network_mode = "host"` with a `port`: the process binds that port on the host itself.
    HostNetwork { port: u16 },
}

impl StopFirstReason {
    /// The first reason that applies to a service with these settings, if any. Swarm
    /// publishes ports through its routing mesh, so a fixed port holds only for containers.
    pub fn of(
        runtime: super::Runtime,
        volumes: &[Mount],
        publish: &[Publish],
        network_mode: NetworkMode,
        port: Option<u16>,
    ) -> Option<StopFirstReason> {
        if let Some(v) = volumes
            .iter()
            .filter(|m| !m.read_only)
            .find_map(Mount::volume)
        {
            return Some(StopFirstReason::ReadWriteVolume {
                volume: v.to_string(),
            });
        }
        if runtime != super::Runtime::Container {
            return None;
        }
        if let Some(p) = publish.first() {
            return Some(StopFirstReason::FixedHostPort {
                publish: p.to_string(),
            });
        }
        match (network_mode, port) {
            (NetworkMode::Host, Some(port)) => Some(StopFirstReason::HostNetwork { port }),
            _ => None,
        }
    }

    /// What two copies at once would do, e.g. "two copies of the process would write
    /// `cache-data` at once".
    pub fn consequence(&self) -> String {
        match self {
            StopFirstReason::ReadWriteVolume { volume } => {
                format!("two copies of the process would write `{volume}` at once")
            }
            StopFirstReason::FixedHostPort { .. } | StopFirstReason::HostNetwork { .. } => {
                "a fixed host port allows one replica per host and stop-first".to_string()
            }
        }
    }
}

impl fmt::Display for StopFirstReason {
    /// `read-write volume `cache-data``, `fixed host port `8125:8125/udp``,
    /// `host network, port 8080`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopFirstReason::ReadWriteVolume { volume } => {
                write!(f, "read-write volume `{volume}`")
            }
            StopFirstReason::FixedHostPort { publish } => {
                write!(f, "fixed host port `{publish}`")
            }
            StopFirstReason::HostNetwork { port } => {
                write!(f, "host network, port {port}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_parse_and_print_canonically() {
        let m: Mount = "cache-data:/data".parse().unwrap();
        assert_eq!(m.volume(), Some("cache-data"));
        assert!(!m.read_only);
        let b: Mount = "/proc/:/host/proc/:ro".parse().unwrap();
        assert_eq!(b.source, MountSource::Bind("/proc/".into()));
        assert_eq!(b.to_string(), "/proc/:/host/proc/:ro");
        assert_eq!("a:/b:rw".parse::<Mount>().unwrap().to_string(), "a:/b");
        for bad in ["./data:/data", "data", "data:rel", "a:/b:rx", "a b:/c"] {
            assert!(bad.parse::<Mount>().is_err(), "{bad}");
        }
    }

    #[test]
    fn publish_parses_ip_port_and_protocol() {
        let p: Publish = "8125:8125/udp".parse().unwrap();
        assert_eq!(
            (p.host_port, p.container_port, p.protocol),
            (8125, 8125, Protocol::Udp)
        );
        let p: Publish = "127.0.0.1:8126:8126".parse().unwrap();
        assert_eq!(p.host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(p.to_string(), "127.0.0.1:8126:8126");
        let p: Publish = "[::1]:80:8080/tcp".parse().unwrap();
        assert_eq!(p.to_string(), "[::1]:80:8080");
        for bad in [
            "8125",
            "0:80",
            "80:80/sctp",
            "x:80:80",
            "8000-8010:80",
            "1.2.3.4:80",
        ] {
            assert!(bad.parse::<Publish>().is_err(), "{bad}");
        }
    }

    #[test]
    fn restart_policies_round_trip() {
        for s in [
            "no",
            "always",
            "unless-stopped",
            "on-failure",
            "on-failure:3",
        ] {
            assert_eq!(s.parse::<Restart>().unwrap().to_string(), s);
        }
        assert!("on-failure:0".parse::<Restart>().is_err());
        assert!("sometimes".parse::<Restart>().is_err());
    }
}
