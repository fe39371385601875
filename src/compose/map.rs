//! Compose keys to gantry keys.
//!
//! Every key of a service is either mapped (an [`Entry`] that names its Compose line) or
//! listed as [`Unmapped`] with the reason, in the words of what gantry does instead. The
//! table of reasons is [`unsupported`]; docs/import.md is the same table for people.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

use super::interpolate::interpolate;
use super::write::{Doc, Entry, TVal, Table};
use super::yaml::{Node, Value};
use super::{ImportError, Imported, Input, Note, Unmapped};
use crate::model::container::{Mount, Publish, Restart};
use crate::model::{ByteSize, Duration, ImageRef};

/// Environment variable names that look secret: their values become `secret_env`.
/// (`PASS` covers `PASSWORD`, `PASSWD`, `DB_PASS`, `PASSPHRASE`.)
const SECRET_WORDS: [&str; 7] = [
    "PASS",
    "SECRET",
    "TOKEN",
    "KEY",
    "CREDENTIAL",
    "AUTH",
    "PRIVATE",
];

/// The keys of a gantry service in the order they are written.
const ORDER: &[&str] = &[
    "image",
    "allow_mutable_tag",
    "replicas",
    "entrypoint",
    "command",
    "user",
    "working_dir",
    "port",
    "host_ports",
    "publish",
    "env_file",
    "secret_env",
    "depends_on",
    "networks",
    "network_mode",
    "volumes",
    "tmpfs",
    "restart",
    "stop_grace_period",
    "resources",
    "log",
    "cap_add",
    "cap_drop",
    "privileged",
    "read_only",
    "init",
    "pid",
    "shm_size",
    "sysctls",
    "ulimits",
    "extra_hosts",
    "devices",
];

/// Does this variable name look like it holds a secret?
pub fn looks_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    SECRET_WORDS.iter().any(|w| upper.contains(w))
}

/// Does this value hold a URL with a password (`scheme://user:password@host`)? Such a value
/// is a secret whatever its name (`DATABASE_URL`, `REDIS_URL`).
pub fn has_url_password(value: &str) -> bool {
    value.match_indices("://").any(|(at, sep)| {
        let rest = &value[at + sep.len()..];
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        authority
            .rsplit_once('@')
            .and_then(|(userinfo, _)| userinfo.split_once(':'))
            .is_some_and(|(_, password)| !password.is_empty())
    })
}

/// The service keys [`unsupported`] has a reason for (docs/import.md lists each).
pub const UNSUPPORTED: &[&str] = &[
    "build",
    "container_name",
    "hostname",
    "domainname",
    "expose",
    "links",
    "external_links",
    "secrets",
    "configs",
    "dns",
    "dns_search",
    "dns_opt",
    "profiles",
    "extends",
    "stop_signal",
    "security_opt",
    "mem_reservation",
    "cpu_shares",
    "cpu_quota",
    "cpu_period",
    "cpuset",
    "cpu_count",
    "cpu_percent",
    "cpu_rt_period",
    "cpu_rt_runtime",
    "mem_swappiness",
    "memswap_limit",
    "oom_kill_disable",
    "oom_score_adj",
    "pids_limit",
    "blkio_config",
    "storage_opt",
    "device_cgroup_rules",
    "gpus",
    "pull_policy",
    "platform",
    "stdin_open",
    "tty",
    "attach",
    "volumes_from",
    "volume_driver",
    "annotations",
    "cgroup",
    "cgroup_parent",
    "credential_spec",
    "group_add",
    "ipc",
    "isolation",
    "mac_address",
    "runtime",
    "userns_mode",
    "uts",
    "use_api_socket",
    "label_file",
    "develop",
    "post_start",
    "pre_stop",
    "models",
    "provider",
    "driver_opts",
    "log_driver",
    "log_opt",
];

/// Why a Compose service key that gantry has no counterpart for is left out.
pub fn unsupported(key: &str) -> Option<&'static str> {
    Some(match key {
        "build" => {
            "gantry deploys images that exist: build and push the image, and name it in `image`"
        }
        "container_name" => {
            "gantry names containers `<project>-<service>-<revision>-<n>`: a fixed name would stop a new replica from starting beside the old one"
        }
        "hostname" | "domainname" => {
            "gantry has no host name option; on the project network the service's name resolves to its replicas"
        }
        "expose" => {
            "not needed: containers on the project network reach each other's ports without it"
        }
        "links" | "external_links" => {
            "gantry has no links; on the project network a service's name resolves to its replicas (no aliases)"
        }
        "secrets" | "configs" => {
            "gantry has no secret or config files: use `env_file`, `secret_env`, or a read-only bind mount in `volumes`"
        }
        "dns" | "dns_search" | "dns_opt" => "gantry has no DNS options",
        "profiles" => {
            "gantry has no profiles: every service of the configuration is deployed (Compose starts this one only with its profile)"
        }
        "extends" => {
            "`extends` is not followed: merge the other file's service by hand, or with `docker compose config` first"
        }
        "stop_signal" => "gantry always stops with SIGTERM, then SIGKILL after `stop_grace_period`",
        "security_opt" => "gantry has no security options (seccomp, AppArmor, no-new-privileges)",
        "mem_reservation"
        | "cpu_shares"
        | "cpu_quota"
        | "cpu_period"
        | "cpuset"
        | "cpu_count"
        | "cpu_percent"
        | "cpu_rt_period"
        | "cpu_rt_runtime"
        | "mem_swappiness"
        | "memswap_limit"
        | "oom_kill_disable"
        | "oom_score_adj"
        | "pids_limit"
        | "blkio_config"
        | "storage_opt"
        | "device_cgroup_rules"
        | "gpus" => "gantry limits CPUs and memory only (`resources = { cpus, memory }`)",
        "pull_policy" => "gantry pulls an image only when a host does not have it (by digest)",
        "platform" => "gantry runs the image the engine pulls for its own platform",
        "stdin_open" | "tty" | "attach" => {
            "gantry runs services detached, without a terminal (`gantry exec` opens one)"
        }
        "volumes_from" => "gantry mounts named volumes or host paths only (`volumes`)",
        "volume_driver" => "gantry creates named volumes with the engine's default driver",
        "annotations" | "cgroup" | "cgroup_parent" | "credential_spec" | "group_add" | "ipc"
        | "isolation" | "mac_address" | "runtime" | "userns_mode" | "uts" | "use_api_socket"
        | "label_file" | "develop" | "post_start" | "pre_stop" | "models" | "provider"
        | "driver_opts" | "log_driver" | "log_opt" => "gantry has no such container option",
        _ => return None,
    })
}

/// The keys of the Compose specification's service that the mapper reads itself.
pub const MAPPED: &[&str] = &[
    "image",
    "command",
    "entrypoint",
    "environment",
    "env_file",
    "ports",
    "volumes",
    "tmpfs",
    "networks",
    "network_mode",
    "restart",
    "deploy",
    "scale",
    "stop_grace_period",
    "healthcheck",
    "logging",
    "labels",
    "depends_on",
    "cap_add",
    "cap_drop",
    "privileged",
    "read_only",
    "init",
    "pid",
    "shm_size",
    "sysctls",
    "ulimits",
    "extra_hosts",
    "devices",
    "user",
    "working_dir",
    "mem_limit",
    "cpus",
];

pub struct Mapper<'a> {
    input: &'a Input<'a>,
    unmapped: Vec<Unmapped>,
    notes: Vec<Note>,
    project: String,
    services: Vec<String>,
    /// Compose name -> gantry name, for the services written.
    names: BTreeMap<String, String>,
    /// Top-level `volumes:` and `networks:` entries.
    top_volumes: BTreeMap<String, Node>,
    top_networks: BTreeMap<String, Node>,
    /// Services run to completion before another starts (`service_completed_successfully`)
    /// that become `[task.NAME]`: Compose name -> (gantry name, the Compose name of the
    /// service whose spec the task runs from).
    tasks: BTreeMap<String, (String, String)>,
    /// The Compose name of the service being mapped.
    current: String,
}

/// One service's mapped keys, collected before they are ordered and written.
#[derive(Default)]
struct Svc {
    main: Vec<Entry>,
    health: Vec<Entry>,
    rollout: Vec<Entry>,
    env: Vec<Entry>,
    labels: Vec<Entry>,
    trailer: Vec<String>,
    notes: Vec<String>,
}

fn entry(key: &str, value: TVal, node: &Node, source_key: &str) -> Entry {
    Entry {
        key: key.to_string(),
        value,
        line: node.line,
        column: node.col,
        source_key: source_key.to_string(),
        notes: Vec::new(),
    }
}

fn strs(items: &[String]) -> TVal {
    TVal::List(items.iter().cloned().map(TVal::Str).collect())
}

/// A string-ish scalar's text (numbers and booleans as written).
fn text(node: &Node) -> Option<String> {
    node.str().map(str::to_string)
}

/// Splits a command line the way Compose does (POSIX shell words, no expansion).
pub fn shell_words(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err("unterminated single quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => cur.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                cur.push('\\');
                                cur.push(c);
                            }
                            None => return Err("unterminated double quote".into()),
                        },
                        Some(c) => cur.push(c),
                        None => return Err("unterminated double quote".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(c) = chars.next() {
                    if c != '\n' {
                        cur.push(c);
                    }
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// A name as gantry wants it: lower-case letters, digits and `-`, starting with a letter,
/// at most 40 characters.
pub fn gantry_name(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let mut out = out.trim_matches('-').to_string();
    if !out.starts_with(|c: char| c.is_ascii_lowercase()) {
        out = format!("s-{out}");
    }
    out.truncate(40);
    out.trim_end_matches('-').to_string()
}

/// Joins `rel` to `base` and removes `.` and `..` without touching the file system.
pub fn normalize(base: &Path, rel: &str) -> PathBuf {
    let mut out = PathBuf::new();
    for c in base.join(rel).components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// One entry of `ports`.
#[derive(Debug, Clone, PartialEq)]
struct PortSpec {
    ip: Option<String>,
    host: Option<(u16, u16)>,
    container: (u16, u16),
    proto: String,
    written: String,
}

fn port_range(s: &str) -> Option<(u16, u16)> {
    let s = s.trim();
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (a.parse().ok()?, b.parse().ok()?);
            (a <= b).then_some((a, b))
        }
        None => s.parse().ok().map(|p| (p, p)),
    }
}

/// `[IP:][HOST[-HOST]:]CONTAINER[-CONTAINER][/PROTO]`, IPv6 in brackets or not.
fn parse_port_short(s: &str) -> Option<PortSpec> {
    let (rest, proto) = match s.rsplit_once('/') {
        Some((r, p)) => (r, p.to_ascii_lowercase()),
        None => (s, "tcp".to_string()),
    };
    let (ip, rest) = if let Some(r) = rest.strip_prefix('[') {
        let (ip, r) = r.split_once("]:")?;
        (Some(ip.to_string()), r.to_string())
    } else {
        let parts: Vec<&str> = rest.split(':').collect();
        if parts.len() > 3 {
            let n = parts.len();
            (
                Some(parts[..n - 2].join(":")),
                format!("{}:{}", parts[n - 2], parts[n - 1]),
            )
        } else if parts.len() == 3 {
            (
                Some(parts[0].to_string()),
                format!("{}:{}", parts[1], parts[2]),
            )
        } else {
            (None, rest.to_string())
        }
    };
    let (host, container) = match rest.split_once(':') {
        Some((h, c)) => {
            let host = if h.is_empty() {
                None
            } else {
                Some(port_range(h)?)
            };
            (host, port_range(c)?)
        }
        None => (None, port_range(&rest)?),
    };
    Some(PortSpec {
        ip: ip.filter(|i| !i.is_empty()),
        host,
        container,
        proto,
        written: s.to_string(),
    })
}

impl<'a> Mapper<'a> {
    pub fn new(input: &'a Input<'a>) -> Self {
        Mapper {
            input,
            unmapped: Vec::new(),
            notes: Vec::new(),
            project: String::new(),
            services: Vec::new(),
            names: BTreeMap::new(),
            top_volumes: BTreeMap::new(),
            top_networks: BTreeMap::new(),
            tasks: BTreeMap::new(),
            current: String::new(),
        }
    }

    fn skip(&mut self, node: &Node, key: &str, reason: impl Into<String>) {
        self.unmapped.push(Unmapped {
            line: node.line,
            column: node.col,
            key: key.to_string(),
            reason: reason.into(),
        });
    }

    fn note(&mut self, line: usize, key: &str, message: impl Into<String>) {
        self.notes.push(Note {
            line,
            key: key.to_string(),
            message: message.into(),
        });
    }

    /// [`key_values`], listing the entries it cannot read (a list or a mapping as a
    /// value, a list item that is not a string) instead of dropping them.
    fn key_values<'n>(
        &mut self,
        v: &'n Node,
        path: &str,
    ) -> Vec<(String, Option<String>, &'n Node)> {
        match &v.value {
            Value::Map(entries) => {
                for (k, val) in entries {
                    if matches!(val.value, Value::Seq(_) | Value::Map(_)) {
                        let key = format!("{path}.{}", k.str().unwrap_or("?"));
                        self.skip(
                            val,
                            &key,
                            format!("expected a string, found {}", val.kind()),
                        );
                    }
                }
            }
            Value::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    if item.str().is_none() {
                        self.skip(
                            item,
                            &format!("{path}[{i}]"),
                            format!("expected `KEY=value`, found {}", item.kind()),
                        );
                    }
                }
            }
            _ => {}
        }
        key_values(v)
    }

    /// An entry gantry's validation refused: out of the output, into the list.
    pub fn unmapped_entry(&mut self, entry: &Entry, reason: String, table: &mut Table) {
        table.trailer.push(format!(
            "not mapped: {} ({}:{}): {reason}",
            entry.source_key, self.input.file, entry.line
        ));
        self.unmapped.push(Unmapped {
            line: entry.line,
            column: entry.column,
            key: entry.source_key.clone(),
            reason,
        });
    }

    /// Interpolates every value of the tree in place (keys are not interpolated).
    pub fn interpolate(&mut self, node: &mut Node) -> Result<(), ImportError> {
        self.interpolate_at(node, "")
    }

    fn interpolate_at(&mut self, node: &mut Node, path: &str) -> Result<(), ImportError> {
        let (line, col) = (node.line, node.col);
        match &mut node.value {
            Value::Scalar(s) => {
                let r = interpolate(&s.text, self.input.lookup).map_err(|e| ImportError {
                    line,
                    column: col,
                    message: format!(
                        "required variable `{}` is missing a value: {}",
                        e.var, e.message
                    ),
                })?;
                for var in &r.unset {
                    self.notes.push(Note {
                        line,
                        key: path.to_string(),
                        message: format!(
                            "variable `{var}` is not set and has no default: kept as written"
                        ),
                    });
                }
                let in_env = path.starts_with("services.")
                    && (path.contains(".environment.") || path.contains(".environment["));
                let mut secrets: Vec<&String> = r
                    .vars
                    .iter()
                    .filter(|v| looks_secret(v) && !r.unset.contains(v))
                    .collect();
                if secrets.is_empty() && has_url_password(&r.text) && !has_url_password(&s.text) {
                    // A password a variable brought in, inside a URL.
                    secrets.extend(r.vars.iter().filter(|v| !r.unset.contains(v)));
                }
                if !in_env && !secrets.is_empty() {
                    // A secret outside the environment (a command line, a label) would be
                    // written in clear: keep the reference instead.
                    let names: Vec<String> = secrets.iter().map(|v| format!("`{v}`")).collect();
                    self.notes.push(Note {
                        line,
                        key: path.to_string(),
                        message: format!(
                            "made from {} (looks secret): not resolved, left as written, so that no secret is written; give it to the service through `secret_env`",
                            names.join(", ")
                        ),
                    });
                    s.vars = r.vars;
                    return Ok(());
                }
                s.text = r.text;
                s.vars = r.vars;
            }
            Value::Seq(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    self.interpolate_at(item, &format!("{path}[{i}]"))?;
                }
            }
            Value::Map(entries) => {
                for (k, v) in entries.iter_mut() {
                    let key = k.str().unwrap_or("?").to_string();
                    let p = if path.is_empty() {
                        key
                    } else {
                        format!("{path}.{key}")
                    };
                    self.interpolate_at(v, &p)?;
                }
            }
            Value::Null => {}
        }
        Ok(())
    }

    /// The whole file.
    pub fn map(&mut self, root: &Node) -> Result<Doc, ImportError> {
        let Some(top) = root.map() else {
            return Err(ImportError {
                line: root.line,
                column: root.col,
                message: format!(
                    "a Compose file is a mapping with `services:`, found {}",
                    root.kind()
                ),
            });
        };
        let Some(services) = root.get("services") else {
            return Err(ImportError {
                line: root.line,
                column: root.col,
                message: "no `services:` in this file".into(),
            });
        };
        let Some(services) = services.map() else {
            return Err(ImportError {
                line: services.line,
                column: services.col,
                message: format!("`services` must be a mapping, found {}", services.kind()),
            });
        };
        self.project_name(root);
        let mut version = None;
        for (k, v) in top {
            let key = k.str().unwrap_or("?");
            match key {
                "services" => {}
                "version" => version = text(v),
                "name" => {}
                "volumes" => {
                    for (name, def) in v.map().unwrap_or_default() {
                        let name_s = name.str().unwrap_or("?").to_string();
                        self.top_volumes.insert(name_s.clone(), def.clone());
                        self.top_level_volume(&name_s, def);
                    }
                }
                "networks" => {
                    for (name, def) in v.map().unwrap_or_default() {
                        let name_s = name.str().unwrap_or("?").to_string();
                        self.top_networks.insert(name_s.clone(), def.clone());
                        self.top_level_network(&name_s, name, def);
                    }
                }
                "secrets" | "configs" => self.skip(
                    k,
                    key,
                    "gantry has no secret or config files: use `env_file`, `secret_env`, or a read-only bind mount in `volumes`",
                ),
                "include" => self.skip(
                    k,
                    key,
                    "included files are not followed: import each file, or run `docker compose config` first and import its output",
                ),
                k2 if k2.starts_with("x-") => {} // extension fields: Compose ignores them too
                _ => self.skip(k, key, "not a key of the Compose file format"),
            }
        }

        // Names first, so that references (`depends_on`) can follow renames.
        let mut taken = BTreeSet::new();
        for (k, v) in services {
            let name = k.str().unwrap_or("?").to_string();
            let path = format!("services.{name}");
            if v.get("image").is_none() {
                let why = if v.get("build").is_some() {
                    "no `image`, only `build`: gantry deploys images that exist; build and push it, then add the service with its `image`"
                } else {
                    "no `image`: gantry deploys images"
                };
                self.skip(k, &path, why);
                continue;
            }
            let gname = gantry_name(&name);
            if !taken.insert(gname.clone()) {
                self.skip(
                    k,
                    &path,
                    format!("its gantry name `{gname}` is taken by another service"),
                );
                continue;
            }
            if gname != name {
                self.note(
                    k.line,
                    &path,
                    format!(
                        "service `{name}` is `{gname}` in gantry (names are DNS labels: lower-case letters, digits and `-`); services that reach it by name must use `{gname}`"
                    ),
                );
            }
            self.names.insert(name, gname);
        }

        self.find_tasks(services);

        let mut doc = Doc::default();
        let mut head = vec![format!(
            "Imported by `gantry import` from {}{}.",
            self.input.file,
            version
                .map(|v| format!(" (Compose file version \"{v}\")"))
                .unwrap_or_default()
        )];
        head.push(format!(
            "Each comment `{}:N` names the line a value comes from; `not mapped:` comments say what",
            self.input.file
        ));
        head.push("has no counterpart in gantry, and why (`gantry import` lists them too).".into());
        doc.head = head;
        doc.tables.push(Table {
            header: "project".into(),
            line: 0,
            notes: vec![],
            entries: vec![Entry {
                key: "name".into(),
                value: TVal::Str(self.project.clone()),
                line: root.get("name").map_or(0, |n| n.line),
                column: root.get("name").map_or(0, |n| n.col),
                source_key: "name".into(),
                notes: vec![],
            }],
            trailer: vec![],
        });
        for (k, v) in services {
            let name = k.str().unwrap_or("?").to_string();
            if let Some((tname, host)) = self.tasks.get(&name).cloned() {
                let table = self.task(&name, &tname, &host, k, v);
                doc.tables.push(table);
                continue;
            }
            let Some(gname) = self.names.get(&name).cloned() else {
                continue;
            };
            let svc = self.service(&name, v);
            self.services.push(gname.clone());
            let mut main = svc.main;
            main.sort_by_key(|e| {
                ORDER
                    .iter()
                    .position(|o| *o == e.key)
                    .unwrap_or(ORDER.len())
            });
            let header = format!("service.{}", write_key(&gname));
            doc.tables.push(Table {
                header: header.clone(),
                line: k.line,
                notes: svc.notes,
                entries: main,
                trailer: svc.trailer,
            });
            for (sub, entries) in [
                ("env", svc.env),
                ("labels", svc.labels),
                ("health", svc.health),
                ("rollout", svc.rollout),
            ] {
                if !entries.is_empty() {
                    doc.tables.push(Table {
                        header: format!("{header}.{sub}"),
                        line: 0,
                        notes: vec![],
                        entries,
                        trailer: vec![],
                    });
                }
            }
        }
        Ok(doc)
    }

    pub fn finish(mut self, toml: String) -> Imported {
        self.unmapped
            .sort_by(|a, b| (a.line, a.column, &a.key).cmp(&(b.line, b.column, &b.key)));
        // A secret's value is not written at all: "kept as written" would mislead.
        let secret: BTreeSet<String> = self
            .notes
            .iter()
            .filter(|n| n.message.contains("secret_env"))
            .map(|n| n.key.clone())
            .collect();
        self.notes
            .retain(|n| !(secret.contains(&n.key) && n.message.contains("kept as written")));
        self.notes
            .sort_by(|a, b| (a.line, &a.key, &a.message).cmp(&(b.line, &b.key, &b.message)));
        self.notes.dedup();
        Imported {
            toml,
            project: self.project,
            services: self.services,
            tasks: self.tasks.values().map(|(t, _)| t.clone()).collect(),
            unmapped: self.unmapped,
            notes: self.notes,
        }
    }

    fn project_name(&mut self, root: &Node) {
        let (name, from) = if let Some(p) = self.input.project_name {
            (p.to_string(), "--project-name")
        } else if let Some(p) =
            (self.input.lookup)("COMPOSE_PROJECT_NAME").filter(|p| !p.is_empty())
        {
            (p, "COMPOSE_PROJECT_NAME")
        } else if let Some(p) = root.get("name").and_then(text) {
            (p, "name")
        } else {
            let dir = self
                .input
                .compose_dir
                .file_name()
                .map(|d| d.to_string_lossy().into_owned())
                .unwrap_or_else(|| "app".into());
            (dir, "the Compose file's directory")
        };
        let gname = gantry_name(&name);
        // Compose's own project name: lower case, [a-z0-9_-].
        let compose: String = name
            .to_ascii_lowercase()
            .chars()
            .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'))
            .collect();
        if gname != compose {
            self.note(
                root.get("name").map_or(0, |n| n.line),
                "name",
                format!(
                    "project `{compose}` (from {from}) is `{gname}` in gantry: named volumes are `{gname}_NAME`, not `{compose}_NAME`, so they start empty unless you copy them"
                ),
            );
        }
        self.project = gname;
    }

    fn top_level_volume(&mut self, name: &str, def: &Node) {
        let path = format!("volumes.{name}");
        let Some(entries) = def.map() else { return };
        for (k, v) in entries {
            let opt = k.str().unwrap_or("?");
            let reason = match opt {
                "external" if v.bool() == Some(false) => continue,
                "external" => format!(
                    "an existing volume: gantry names its volumes `{}_{name}` and creates them, so services get that volume instead",
                    self.project_placeholder()
                ),
                "name" => format!(
                    "gantry names the engine's volume `<project>_{name}` (here `{}_{name}`), not `{}`",
                    self.project_placeholder(),
                    v.str().unwrap_or("?")
                ),
                "labels" => {
                    "gantry labels volumes with `[project] labels`, the same for every volume"
                        .into()
                }
                _ => {
                    "gantry creates volumes with the engine's default driver and no options".into()
                }
            };
            self.skip(k, &format!("{path}.{opt}"), reason);
        }
    }

    fn project_placeholder(&self) -> String {
        if self.project.is_empty() {
            "<project>".into()
        } else {
            self.project.clone()
        }
    }

    fn top_level_network(&mut self, name: &str, key: &Node, def: &Node) {
        let path = format!("networks.{name}");
        if is_external(def) {
            return; // joined by name through `networks`
        }
        if name == "default" && def.map().is_none_or(|m| m.is_empty()) {
            return;
        }
        self.skip(
            key,
            &path,
            "gantry creates one network per project (named after it) and puts every service on it: this network is not created, and the services on it are on the project network instead",
        );
    }

    fn external_name(&self, network: &str) -> Option<String> {
        let def = self.top_networks.get(network)?;
        if !is_external(def) {
            return None;
        }
        let ext = def.get("external");
        ext.and_then(|e| e.get("name"))
            .and_then(text)
            .or_else(|| def.get("name").and_then(text))
            .or_else(|| Some(network.to_string()))
    }

    fn service(&mut self, name: &str, node: &Node) -> Svc {
        let mut s = Svc::default();
        self.current = name.to_string();
        let base = format!("services.{name}");
        let Some(entries) = node.map() else {
            self.skip(
                node,
                &base,
                format!("a service is a mapping, found {}", node.kind()),
            );
            return s;
        };
        // Replicas first: ports and rollout depend on them.
        let replicas = self.replicas(node, &base, &mut s);
        for (k, v) in entries {
            let key = k.str().unwrap_or("?");
            let path = format!("{base}.{key}");
            if key.starts_with("x-") || key == "scale" || key == "deploy" {
                continue; // extensions; scale and deploy are read with the replicas
            }
            if !MAPPED.contains(&key) {
                let reason = unsupported(key)
                    .map(str::to_string)
                    .unwrap_or_else(|| "not a key of a Compose service".to_string());
                self.skip(k, &path, reason);
                continue;
            }
            self.service_key(key, v, &path, replicas, node, &mut s);
        }
        if let Some(deploy) = node.get("deploy") {
            self.deploy(deploy, &format!("{base}.deploy"), replicas, node, &mut s);
        }
        self.trailer(&mut s, &base);
        s
    }

    /// Services others wait for with `service_completed_successfully` (a migration) run
    /// once and exit: as a gantry service, the exit would fail the apply. When a service
    /// that waits for it runs the same image, it becomes a `[task.NAME]` of that service:
    /// run from its new spec before it rolls, which is what Compose's ordering was for.
    fn find_tasks(&mut self, services: &[(Node, Node)]) {
        let image = |n: &Node| n.get("image").and_then(text);
        for (k, v) in services {
            let Some(dependent) = k.str() else { continue };
            if !self.names.contains_key(dependent) {
                continue;
            }
            for (dep, opts) in v.get("depends_on").and_then(Node::map).unwrap_or_default() {
                let Some(dep) = dep.str() else { continue };
                let done = opts.get("condition").and_then(Node::str)
                    == Some("service_completed_successfully");
                if !done || self.tasks.contains_key(dep) || !self.names.contains_key(dep) {
                    continue;
                }
                let Some((_, task)) = services.iter().find(|(n, _)| n.str() == Some(dep)) else {
                    continue;
                };
                if image(task).is_none() || image(task) != image(v) || task.get("command").is_none()
                {
                    continue;
                }
                let Some(tname) = self.names.remove(dep) else {
                    continue;
                };
                self.tasks
                    .insert(dep.to_string(), (tname, dependent.to_string()));
            }
        }
    }

    fn task(&mut self, name: &str, tname: &str, host: &str, k: &Node, v: &Node) -> Table {
        let base = format!("services.{name}");
        self.current = name.to_string();
        let host_g = self
            .names
            .get(host)
            .cloned()
            .unwrap_or_else(|| host.to_string());
        let mut entries = vec![Entry {
            key: "service".into(),
            value: TVal::Str(host_g.clone()),
            line: k.line,
            column: k.col,
            source_key: base.clone(),
            notes: vec![format!(
                "`{host}` waits for `{name}` to complete (service_completed_successfully), and runs the same image: a task run from `{host_g}`'s new spec before it rolls"
            )],
        }];
        self.note(
            k.line,
            &base,
            format!("a one-off service: written as `[task.{tname}]`, run from `{host_g}`'s new spec (its image, environment, volumes) before `{host_g}` rolls, when the image changes"),
        );
        for (key_node, val) in v.map().unwrap_or_default() {
            let key = key_node.str().unwrap_or("?");
            let path = format!("{base}.{key}");
            match key {
                "image" => {}
                "command" => {
                    let words = match (&val.value, val.str()) {
                        (Value::Seq(items), _) => items.iter().map(text).collect::<Option<Vec<_>>>(),
                        (_, Some(t)) => shell_words(t).ok(),
                        _ => None,
                    };
                    match words {
                        Some(w) => entries.push(entry("command", strs(&w), val, &path)),
                        None => self.skip(val, &path, "expected a string or a list of strings"),
                    }
                }
                "depends_on" => {
                    let deps: Vec<(String, &Node)> = match &val.value {
                        Value::Seq(items) => items.iter().filter_map(|n| Some((text(n)?, n))).collect(),
                        Value::Map(m) => m.iter().filter_map(|(d, _)| Some((text(d)?, d))).collect(),
                        _ => Vec::new(),
                    };
                    let mut names: Vec<String> = Vec::new();
                    for (dep, at) in deps {
                        match self.names.get(&dep) {
                            Some(g) if dep != host => names.push(g.clone()),
                            Some(_) => {}
                            None => self.skip(at, &format!("{path}.{dep}"), format!("`{dep}` is not a service of the imported configuration")),
                        }
                    }
                    names.sort();
                    names.dedup();
                    if !names.is_empty() {
                        entries.push(entry("depends_on", strs(&names), val, &path));
                    }
                }
                "restart" | "deploy" | "scale" => self.skip(key_node, &path, "a task runs once, to completion"),
                k2 if k2.starts_with("x-") => {}
                _ => self.skip(
                    key_node,
                    &path,
                    format!("a task runs with `{host_g}`'s spec (environment, volumes, network, options): its own `{key}` is not used"),
                ),
            }
        }
        let mut trailer = Vec::new();
        let mut s = Svc::default();
        self.trailer(&mut s, &base);
        trailer.extend(s.trailer);
        Table {
            header: format!("task.{}", write_key(tname)),
            line: k.line,
            notes: vec![],
            entries,
            trailer,
        }
    }

    /// The service's `not mapped` entries, as comments under its table.
    fn trailer(&self, s: &mut Svc, base: &str) {
        let prefix = format!("{base}.");
        let prefix_seq = format!("{base}[");
        let mut mine: Vec<&Unmapped> = self
            .unmapped
            .iter()
            .filter(|u| {
                u.key == base || u.key.starts_with(&prefix) || u.key.starts_with(&prefix_seq)
            })
            .collect();
        mine.sort_by(|a, b| (a.line, a.column, &a.key).cmp(&(b.line, b.column, &b.key)));
        for u in mine {
            {
                s.trailer.push(format!(
                    "not mapped: {} ({}:{}): {}",
                    &u.key, self.input.file, u.line, u.reason
                ));
            }
        }
    }

    fn replicas(&mut self, node: &Node, base: &str, s: &mut Svc) -> i64 {
        let deploy = node.get("deploy");
        let mode = deploy.and_then(|d| d.get("mode"));
        if let Some(m) = mode {
            match m.str() {
                Some("replicated") | None => {}
                Some("global") => {
                    self.note(
                        m.line,
                        &format!("{base}.deploy.mode"),
                        "global: one replica on every host, which is gantry's `replicas = 1` (replicas are per host)",
                    );
                    s.main.push(entry(
                        "replicas",
                        TVal::Int(1),
                        m,
                        &format!("{base}.deploy.mode"),
                    ));
                    return 1;
                }
                Some(other) => {
                    self.skip(
                        m,
                        &format!("{base}.deploy.mode"),
                        format!("`{other}`: a job runs once; gantry's one-off commands are `[task.NAME]` tables, run from a service's image before it rolls"),
                    );
                }
            }
        }
        let (n, key, at) = match (deploy.and_then(|d| d.get("replicas")), node.get("scale")) {
            (Some(r), scale) => {
                if let Some(sc) = scale {
                    self.skip(
                        sc,
                        &format!("{base}.scale"),
                        "`deploy.replicas` is used instead",
                    );
                }
                (r, format!("{base}.deploy.replicas"), r)
            }
            (None, Some(sc)) => (sc, format!("{base}.scale"), sc),
            (None, None) => return 1,
        };
        match n.str().and_then(|t| t.parse::<i64>().ok()) {
            Some(r) if r >= 1 => {
                s.main.push(entry("replicas", TVal::Int(r), at, &key));
                r
            }
            Some(0) => {
                self.skip(
                    at,
                    &key,
                    "0 replicas: a gantry service runs at least one; leave the service out instead",
                );
                1
            }
            _ => {
                self.skip(at, &key, "not a number of replicas");
                1
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn service_key(
        &mut self,
        key: &str,
        v: &Node,
        path: &str,
        replicas: i64,
        svc: &Node,
        s: &mut Svc,
    ) {
        match key {
            "image" => self.image(v, path, s),
            "command" | "entrypoint" => {
                if v.is_null() {
                    return;
                }
                let words = match (&v.value, v.str()) {
                    (Value::Seq(items), _) => items.iter().map(text).collect::<Option<Vec<_>>>(),
                    (_, Some(t)) => match shell_words(t) {
                        Ok(w) => Some(w),
                        Err(e) => {
                            self.skip(v, path, format!("cannot split into words: {e}"));
                            return;
                        }
                    },
                    _ => None,
                };
                match words {
                    Some(w) => s.main.push(entry(key, strs(&w), v, path)),
                    None => self.skip(v, path, "expected a string or a list of strings"),
                }
            }
            "environment" => self.environment(v, path, s),
            "env_file" => self.env_file(v, path, s),
            "ports" => self.ports(v, path, replicas, svc, s),
            "volumes" => self.volumes(v, path, s),
            "tmpfs" => {
                let items: Vec<&Node> = match &v.value {
                    Value::Seq(items) => items.iter().collect(),
                    _ => vec![v],
                };
                let list: Option<Vec<String>> = items.iter().map(|n| text(n)).collect();
                match list {
                    Some(l) if !l.is_empty() => {
                        if let Some(Entry { value: TVal::List(have), .. }) =
                            s.main.iter_mut().find(|e| e.key == "tmpfs")
                        {
                            have.extend(l.into_iter().map(TVal::Str));
                        } else {
                            s.main.push(entry("tmpfs", strs(&l), v, path));
                        }
                    }
                    _ => self.skip(v, path, "expected a path or a list of paths"),
                }
            }
            "networks" => self.networks(v, path, s),
            "network_mode" => match v.str() {
                Some(m @ ("host" | "none")) => s.main.push(entry("network_mode", TVal::Str(m.into()), v, path)),
                Some(other) => self.skip(
                    v,
                    path,
                    format!("`{other}`: gantry's network modes are the project network (the default), `host` and `none`"),
                ),
                None => self.skip(v, path, "expected a string"),
            },
            "restart" => {
                if svc.get("deploy").and_then(|d| d.get("restart_policy")).is_some() {
                    self.skip(v, path, "`deploy.restart_policy` is used instead (as Compose does when both are set)");
                    return;
                }
                match v.str().map(Restart::from_str) {
                    Some(Ok(_)) => s.main.push(entry("restart", TVal::Str(v.str().unwrap_or_default().into()), v, path)),
                    Some(Err(e)) => self.skip(v, path, e),
                    None => self.skip(v, path, "expected a string"),
                }
            }
            "stop_grace_period" => self.duration_entry("stop_grace_period", v, path, &mut s.main),
            "healthcheck" => self.healthcheck(v, path, s),
            "logging" => self.logging(v, path, s),
            "labels" => {
                for (name, value, at) in self.key_values(v, path) {
                    s.labels.push(entry(&name, TVal::Str(value.unwrap_or_default()), at, &format!("{path}.{name}")));
                }
                s.labels.sort_by(|a, b| a.key.cmp(&b.key));
                if v.map().is_none() && v.seq().is_none() {
                    self.skip(v, path, "expected a mapping or a list of `KEY=value`");
                }
            }
            "depends_on" => self.depends_on(v, path, s),
            "cap_add" | "cap_drop" | "extra_hosts" | "devices" => {
                let list: Option<Vec<String>> = match (&v.value, key) {
                    (Value::Map(entries), "extra_hosts") => entries
                        .iter()
                        .map(|(h, ip)| Some(format!("{}:{}", h.str()?, extra_host_ip(ip)?)))
                        .collect(),
                    (Value::Seq(items), "extra_hosts") => items
                        .iter()
                        .map(|n| {
                            let t = n.str()?;
                            Some(match t.split_once('=') {
                                Some((h, ip)) => format!("{h}:{ip}"),
                                None => t.to_string(),
                            })
                        })
                        .collect(),
                    (Value::Seq(items), _) => items.iter().map(text).collect(),
                    _ => None,
                };
                match list {
                    Some(l) => s.main.push(entry(key, strs(&l), v, path)),
                    None => self.skip(v, path, "expected a list of strings"),
                }
            }
            "privileged" | "read_only" | "init" => match v.bool() {
                Some(true) => s.main.push(entry(key, TVal::Bool(true), v, path)),
                Some(false) => {}
                None => self.skip(v, path, "expected true or false"),
            },
            "pid" => match v.str() {
                Some("host") => s.main.push(entry("pid", TVal::Str("host".into()), v, path)),
                _ => self.skip(v, path, "gantry's only PID mode is `host`"),
            },
            "shm_size" => self.size_entry("shm_size", v, path, &mut s.main),
            "sysctls" => {
                let mut table = Vec::new();
                for (name, value, _) in self.key_values(v, path) {
                    let value = value.unwrap_or_default();
                    let val = match value.parse::<i64>() {
                        Ok(n) => TVal::Int(n),
                        Err(_) => TVal::Str(value),
                    };
                    table.push((name, val));
                }
                table.sort_by(|a, b| a.0.cmp(&b.0));
                s.main.push(entry("sysctls", TVal::Inline(table), v, path));
            }
            "ulimits" => {
                let mut table = Vec::new();
                for (name, limit) in v.map().unwrap_or_default() {
                    let name = name.str().unwrap_or("?").to_string();
                    let num = |n: Option<&Node>| n.and_then(|n| n.str()?.parse::<i64>().ok());
                    let val = match (num(Some(limit)), num(limit.get("soft")), num(limit.get("hard"))) {
                        (Some(n), _, _) => TVal::Int(n),
                        (None, Some(soft), Some(hard)) => TVal::Inline(vec![
                            ("soft".into(), TVal::Int(soft)),
                            ("hard".into(), TVal::Int(hard)),
                        ]),
                        _ => {
                            self.skip(limit, &format!("{path}.{name}"), "expected a number or `soft` and `hard`");
                            continue;
                        }
                    };
                    table.push((name, val));
                }
                table.sort_by(|a, b| a.0.cmp(&b.0));
                if !table.is_empty() {
                    s.main.push(entry("ulimits", TVal::Inline(table), v, path));
                }
            }
            "user" | "working_dir" => match text(v) {
                Some(t) => s.main.push(entry(key, TVal::Str(t), v, path)),
                None => self.skip(v, path, "expected a string"),
            },
            "mem_limit" | "cpus" => {
                let limits = svc
                    .get("deploy")
                    .and_then(|d| d.get("resources"))
                    .and_then(|r| r.get("limits"));
                let field = if key == "cpus" { "cpus" } else { "memory" };
                if limits.and_then(|l| l.get(field)).is_some() {
                    self.skip(v, path, format!("`deploy.resources.limits.{field}` is used instead"));
                    return;
                }
                self.resource(field, v, path, s);
            }
            // MAPPED lists exactly the keys above.
            _ => {}
        }
    }

    fn image(&mut self, v: &Node, path: &str, s: &mut Svc) {
        let Some(image) = text(v) else {
            self.skip(v, path, "expected a string");
            return;
        };
        match ImageRef::from_str(&image) {
            Ok(r) => {
                s.main
                    .push(entry("image", TVal::Str(image.clone()), v, path));
                let moving = r.digest.is_none() && r.tag.as_deref().is_none_or(|t| t == "latest");
                if moving {
                    let mut e = entry("allow_mutable_tag", TVal::Bool(true), v, path);
                    e.notes.push(
                        "a moving tag: pin an immutable one (a git sha) and remove this line"
                            .into(),
                    );
                    s.main.push(e);
                    self.note(
                        v.line,
                        path,
                        format!("image `{image}` has a moving tag: `allow_mutable_tag = true` is written; pin an immutable tag so rollbacks know what ran"),
                    );
                }
            }
            Err(e) => {
                let mut entry = entry(
                    "image",
                    TVal::Str("replace-me.invalid/image:imported".into()),
                    v,
                    path,
                );
                entry
                    .notes
                    .push(format!("placeholder: `{image}` is not an image reference"));
                s.main.push(entry);
                self.skip(
                    v,
                    path,
                    format!("{e}; a placeholder `replace-me.invalid/image:imported` is written: put the real image there"),
                );
            }
        }
    }

    fn environment(&mut self, v: &Node, path: &str, s: &mut Svc) {
        if v.map().is_none() && v.seq().is_none() {
            self.skip(v, path, "expected a mapping or a list of `KEY=value`");
            return;
        }
        let mut secrets: Vec<(String, usize)> = Vec::new();
        for (name, value, at) in self.key_values(v, path) {
            let key = format!("{path}.{name}");
            if !valid_env_name(&name) {
                self.skip(at, &key, "gantry's variable names are letters, digits and `_`, not starting with a digit");
                continue;
            }
            let from_secret_var = at
                .scalar()
                .is_some_and(|sc| sc.vars.iter().any(|v| looks_secret(v)));
            match value {
                None => {
                    secrets.push((name.clone(), at.line));
                    self.note(
                        at.line,
                        &key,
                        format!("no value: Compose passes `{name}` from its environment; gantry takes it from its own at apply (`secret_env`): export it there"),
                    );
                }
                Some(val) if looks_secret(&name) || from_secret_var || has_url_password(&val) => {
                    secrets.push((name.clone(), at.line));
                    self.note(
                        at.line,
                        &key,
                        format!("looks secret: its value is not written; `secret_env` reads `{name}` from gantry's environment at apply: export it there"),
                    );
                }
                Some(val) => s.env.push(entry(&name, TVal::Str(val), at, &key)),
            }
        }
        s.env.sort_by(|a, b| a.key.cmp(&b.key));
        if !secrets.is_empty() {
            secrets.sort();
            secrets.dedup_by(|a, b| a.0 == b.0);
            let names: Vec<String> = secrets.iter().map(|(n, _)| n.clone()).collect();
            let mut e = entry("secret_env", strs(&names), v, path);
            e.notes
                .push("values are never written here: export these where gantry runs".into());
            s.main.push(e);
        }
    }

    fn env_file(&mut self, v: &Node, path: &str, s: &mut Svc) {
        let items: Vec<&Node> = match &v.value {
            Value::Seq(items) => items.iter().collect(),
            _ => vec![v],
        };
        let mut chosen = false;
        for (i, item) in items.iter().enumerate() {
            let key = if v.seq().is_some() {
                format!("{path}[{i}]")
            } else {
                path.to_string()
            };
            let (file, required) = match (item.str(), item.get("path")) {
                (Some(f), _) => (f.to_string(), true),
                (None, Some(p)) => (
                    p.str().unwrap_or_default().to_string(),
                    item.get("required").and_then(Node::bool).unwrap_or(true),
                ),
                _ => {
                    self.skip(item, &key, "expected a path");
                    continue;
                }
            };
            if let Some(fmt) = item.get("format") {
                self.skip(
                    fmt,
                    &format!("{key}.format"),
                    "gantry reads env files as dotenv files",
                );
            }
            let written = self.path_for_output(&file);
            if chosen {
                self.skip(
                    item,
                    &key,
                    "gantry takes one `env_file` per service: merge this file into the first one",
                );
                continue;
            }
            match self.input.files.env_file(&written) {
                Ok(_) => {
                    let mut e = entry("env_file", TVal::Str(written), item, &key);
                    e.notes.push(
                        "its values are secret to gantry: plans show its variable names only"
                            .into(),
                    );
                    s.main.push(e);
                    chosen = true;
                }
                Err(why) => {
                    let extra = if required { "" } else { " (`required: false`)" };
                    self.skip(
                        item,
                        &key,
                        format!("`{written}`: {why}{extra}; gantry reads an env file when it validates, so it must exist: create it, then add `env_file = \"{written}\"`"),
                    );
                }
            }
        }
    }

    /// A path from the Compose file as the output should hold it: relative paths are kept
    /// when the output sits beside the Compose file, else made absolute.
    fn path_for_output(&self, file: &str) -> String {
        let file = self.tilde(file);
        if file.starts_with('/') || self.input.same_dir {
            return file;
        }
        normalize(&self.input.compose_dir, &file)
            .to_string_lossy()
            .into_owned()
    }

    fn tilde(&self, p: &str) -> String {
        match p.strip_prefix("~/") {
            Some(rest) => match (self.input.lookup)("HOME") {
                Some(home) => format!("{}/{rest}", home.trim_end_matches('/')),
                None => p.to_string(),
            },
            None => p.to_string(),
        }
    }

    fn ports(&mut self, v: &Node, path: &str, replicas: i64, svc: &Node, s: &mut Svc) {
        let Some(items) = v.seq() else {
            self.skip(v, path, "expected a list");
            return;
        };
        let mut specs: Vec<(PortSpec, &Node, String)> = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let key = format!("{path}[{i}]");
            let spec = match item.map() {
                Some(_) => self.port_long(item, &key),
                None => item.str().and_then(parse_port_short),
            };
            match spec {
                Some(p) => specs.push((p, item, key)),
                None => self.skip(item, &key, "not a port mapping"),
            }
        }
        let batch = rollout_batch(svc, replicas);
        let mut port_taken = false;
        let mut publish: Vec<String> = Vec::new();
        let mut publish_at: Option<&Node> = None;
        for (p, item, key) in specs {
            if p.proto != "tcp" && p.proto != "udp" {
                self.skip(
                    item,
                    &key,
                    format!("`{}`: gantry publishes TCP and UDP ports", p.proto),
                );
                continue;
            }
            if p.container.0 != p.container.1 {
                self.skip(item, &key, format!("`{}`: a range of container ports; gantry publishes single ports (`publish`)", p.written));
                continue;
            }
            let c = p.container.0;
            let fixed = p.host.filter(|(a, b)| a == b).map(|(a, _)| a);
            // One replica and a fixed host port: Compose's own behaviour, as `publish`.
            if replicas == 1 {
                if let Some(h) = fixed {
                    let ip = match &p.ip {
                        Some(ip) if ip.contains(':') => format!("[{ip}]:"),
                        Some(ip) => format!("{ip}:"),
                        None => String::new(),
                    };
                    let udp = if p.proto == "udp" { "/udp" } else { "" };
                    let entry = format!("{ip}{h}:{c}{udp}");
                    if Publish::from_str(&entry).is_ok() {
                        publish.push(entry);
                        publish_at.get_or_insert(item);
                        continue;
                    }
                }
            }
            if p.proto == "udp" {
                self.skip(item, &key, format!("`{}`: UDP on a host port of its own per replica; gantry publishes fixed UDP ports (`publish`) for one replica per host only", p.written));
                continue;
            }
            if port_taken {
                let why = if fixed.is_some() {
                    format!(
                        "`{}`: a fixed host port allows one replica per host, and this service has {replicas}; gantry publishes one port per replica, `port`, on a host port of its own",
                        p.written
                    )
                } else {
                    format!(
                        "`{}`: gantry publishes one port per replica (`port`, here the first one); the other services reach this one on the project network",
                        p.written
                    )
                };
                self.skip(item, &key, why);
                continue;
            }
            port_taken = true;
            s.main
                .push(entry("port", TVal::Int(i64::from(c)), item, &key));
            // gantry publishes `port` on its host's `address` (127.0.0.1 for the local
            // engine), where Compose publishes on every address unless told otherwise.
            match p.ip.as_deref() {
                Some("127.0.0.1") => {}
                None | Some("0.0.0.0" | "::") if fixed.is_none() => self.note(
                    item.line,
                    &key,
                    "Compose publishes this port on every address of the host; gantry publishes `port` on its host's `address` (127.0.0.1 for the local engine): set `[[host]] address` for load balancers on other machines",
                ),
                // A fixed host port shared by the replicas: listed below.
                None | Some("0.0.0.0" | "::") => {}
                Some(ip) => self.skip(
                    item,
                    &key,
                    format!(
                        "host address `{ip}`: gantry publishes `port` on its host's `address` (127.0.0.1 for the local engine): declare a `[[host]]` with `address = \"{ip}\"`"
                    ),
                ),
            }
            match p.host {
                None => {}
                Some((a, b)) if a == b => self.skip(
                    item,
                    &key,
                    format!(
                        "host port {a} shared by {replicas} replicas (Swarm's routing mesh): gantry publishes each replica on a host port of its own; serve {a} from a load balancer (`[lb.NAME]`, and `lb = [\"NAME\"]` on the service)"
                    ),
                ),
                Some((a, b)) => {
                    let need = replicas + batch;
                    if i64::from(b - a) + 1 >= need {
                        s.main.push(entry("host_ports", TVal::Str(format!("{a}-{b}")), item, &key));
                    } else {
                        self.skip(item, &key, format!("host ports {a}-{b}: gantry needs {need} ports for {replicas} replicas and a start-first rollout; it picks free ports itself when `host_ports` is not set"));
                    }
                }
            }
        }
        if !publish.is_empty() {
            s.main.push(entry(
                "publish",
                strs(&publish),
                publish_at.unwrap_or(v),
                path,
            ));
        }
    }

    fn port_long(&mut self, item: &Node, key: &str) -> Option<PortSpec> {
        let target: u16 = item.get("target")?.str()?.parse().ok()?;
        let host = match item.get("published") {
            Some(p) => Some(port_range(p.str()?)?),
            None => None,
        };
        for (k, v) in item.map().unwrap_or_default() {
            match k.str().unwrap_or("?") {
                "target" | "published" | "host_ip" | "protocol" => {}
                "mode" if v.str() == Some("ingress") || v.str() == Some("host") => {}
                other => self.skip(
                    k,
                    &format!("{key}.{other}"),
                    "gantry has no such port option",
                ),
            }
        }
        Some(PortSpec {
            ip: item.get("host_ip").and_then(text),
            host,
            container: (target, target),
            proto: item
                .get("protocol")
                .and_then(text)
                .unwrap_or_else(|| "tcp".into()),
            written: match host {
                Some((a, b)) if a == b => format!("{a}:{target}"),
                Some((a, b)) => format!("{a}-{b}:{target}"),
                None => target.to_string(),
            },
        })
    }

    fn volumes(&mut self, v: &Node, path: &str, s: &mut Svc) {
        let Some(items) = v.seq() else {
            self.skip(v, path, "expected a list");
            return;
        };
        let mut mounts = Vec::new();
        let mut tmpfs = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let key = format!("{path}[{i}]");
            let (kind, source, target, read_only) = if item.map().is_some() {
                let kind = item
                    .get("type")
                    .and_then(text)
                    .unwrap_or_else(|| "volume".into());
                for (k, _) in item.map().unwrap_or_default() {
                    match k.str().unwrap_or("?") {
                        "type" | "source" | "target" | "read_only" => {}
                        "tmpfs" if kind == "tmpfs" => {}
                        other => self.skip(
                            k,
                            &format!("{key}.{other}"),
                            "gantry mounts with `ro` or read-write, no other options",
                        ),
                    }
                }
                if kind == "tmpfs" {
                    let Some(target) = item.get("target").and_then(text) else {
                        self.skip(item, &key, "a tmpfs needs a `target`");
                        continue;
                    };
                    let size = item.get("tmpfs").and_then(|t| t.get("size")).and_then(text);
                    tmpfs.push(match size {
                        Some(sz) => format!("{target}:size={sz}"),
                        None => target,
                    });
                    continue;
                }
                (
                    kind,
                    item.get("source").and_then(text),
                    item.get("target").and_then(text),
                    item.get("read_only").and_then(Node::bool).unwrap_or(false),
                )
            } else {
                let Some(t) = item.str() else {
                    self.skip(item, &key, "expected a string or a mapping");
                    continue;
                };
                let parts: Vec<&str> = t.split(':').collect();
                let (source, target, mode) = match parts.as_slice() {
                    [target] => (None, target.to_string(), None),
                    [source, target] => (Some(source.to_string()), target.to_string(), None),
                    [source, target, mode] => {
                        (Some(source.to_string()), target.to_string(), Some(*mode))
                    }
                    _ => {
                        self.skip(item, &key, "not `SOURCE:TARGET[:MODE]`");
                        continue;
                    }
                };
                let mut ro = false;
                if let Some(mode) = mode {
                    let mut other = Vec::new();
                    for m in mode.split(',') {
                        match m {
                            "ro" => ro = true,
                            "rw" => {}
                            m => other.push(m),
                        }
                    }
                    if !other.is_empty() {
                        self.skip(item, &key, format!("mode `{}`: gantry mounts with `ro` or read-write only (the volume is mounted without it)", other.join(",")));
                    }
                }
                let kind = match &source {
                    Some(src) if src.starts_with(['/', '.', '~']) => "bind",
                    Some(_) => "volume",
                    None => "volume",
                };
                (kind.to_string(), source, Some(target), ro)
            };
            let Some(target) = target else {
                self.skip(item, &key, "no target path");
                continue;
            };
            let source = match (kind.as_str(), source) {
                (_, None) => {
                    self.skip(item, &key, "an anonymous volume: gantry mounts named volumes (`NAME:/path`, kept across revisions) or host paths; give it a name");
                    continue;
                }
                ("bind", Some(src)) => {
                    let src = self.tilde(&src);
                    if src.starts_with('/') {
                        src
                    } else {
                        normalize(&self.input.compose_dir, &src)
                            .to_string_lossy()
                            .into_owned()
                    }
                }
                ("volume", Some(src)) => {
                    if let Some(def) = self.top_volumes.get(&src) {
                        if is_external(def) {
                            self.skip(item, &key, format!("`{src}` is an existing (external) volume: gantry would mount its own `{}_{src}` instead", self.project));
                            continue;
                        }
                    }
                    src
                }
                (other, _) => {
                    self.skip(item, &key, format!("a mount of type `{other}`: gantry mounts named volumes, host paths and tmpfs"));
                    continue;
                }
            };
            let mount = format!("{source}:{target}{}", if read_only { ":ro" } else { "" });
            match Mount::from_str(&mount) {
                Ok(_) => mounts.push(mount),
                Err(e) => self.skip(item, &key, e),
            }
        }
        if !mounts.is_empty() {
            s.main.push(entry("volumes", strs(&mounts), v, path));
        }
        if !tmpfs.is_empty() {
            // `tmpfs:` may have written some already: one key, both lists.
            if let Some(Entry {
                value: TVal::List(have),
                ..
            }) = s.main.iter_mut().find(|e| e.key == "tmpfs")
            {
                have.extend(tmpfs.into_iter().map(TVal::Str));
            } else {
                s.main.push(entry("tmpfs", strs(&tmpfs), v, path));
            }
        }
    }

    fn networks(&mut self, v: &Node, path: &str, s: &mut Svc) {
        let Some(names) = names_and_options(v) else {
            self.skip(v, path, "expected a list or a mapping");
            return;
        };
        let mut joined = Vec::new();
        for (name, at, opts) in names {
            let key = format!("{path}.{name}");
            if let Some(opts) = opts.and_then(Node::map) {
                for (k, _) in opts {
                    self.skip(
                        k,
                        &format!("{key}.{}", k.str().unwrap_or("?")),
                        "gantry has no per-network options (aliases, addresses, priority)",
                    );
                }
            }
            if name == "default" {
                continue; // the project network
            }
            match self.external_name(&name) {
                Some(ext) => joined.push(ext),
                None => self.skip(at, &key, format!("`{name}` is a network this file creates: every gantry service is on the one project network, where the services reach each other by name; the separation between networks is lost")),
            }
        }
        if !joined.is_empty() {
            s.main.push(entry("networks", strs(&joined), v, path));
        }
    }

    fn healthcheck(&mut self, v: &Node, path: &str, s: &mut Svc) {
        if v.get("disable").and_then(Node::bool) == Some(true) {
            self.skip(
                v,
                path,
                "`disable: true`: gantry has no key to turn off an image's HEALTHCHECK",
            );
            return;
        }
        let test = v.get("test");
        let command: Option<Vec<String>> = match test.map(|t| &t.value) {
            Some(Value::Scalar(sc)) => Some(vec!["/bin/sh".into(), "-c".into(), sc.text.clone()]),
            Some(Value::Seq(items)) => {
                let words: Option<Vec<String>> = items.iter().map(text).collect();
                match words.as_deref() {
                    Some([first, rest @ ..]) if first == "CMD" && !rest.is_empty() => {
                        Some(rest.to_vec())
                    }
                    Some([first, rest @ ..]) if first == "CMD-SHELL" && !rest.is_empty() => {
                        Some(vec!["/bin/sh".into(), "-c".into(), rest.join(" ")])
                    }
                    Some([first]) if first == "NONE" => {
                        self.skip(
                            test.unwrap_or(v),
                            &format!("{path}.test"),
                            "`NONE`: gantry has no key to turn off an image's HEALTHCHECK",
                        );
                        return;
                    }
                    _ => None,
                }
            }
            _ => None,
        };
        let Some(command) = command else {
            let at = test.unwrap_or(v);
            self.skip(at, &format!("{path}.test"), "gantry's health check needs a command (`test: [\"CMD\", ...]`); without one the image's own HEALTHCHECK runs, and gantry does not wait for it");
            return;
        };
        let t = test.unwrap_or(v);
        let mut e = entry("command", strs(&command), t, &format!("{path}.test"));
        if command.first().map(String::as_str) == Some("/bin/sh") && command.len() == 3 {
            e.notes
                .push("CMD-SHELL: run by /bin/sh in the container, as Docker does".into());
        }
        // `curl http://localhost:PORT/path`: gantry's own probe does that from the host.
        let url = command.iter().find_map(|w| {
            let rest = w
                .strip_prefix("http://localhost:")
                .or_else(|| w.strip_prefix("http://127.0.0.1:"))?;
            let (port, path) = rest.split_once('/').unwrap_or((rest, ""));
            port.parse::<u16>().ok().map(|p| (p, format!("/{path}")))
        });
        if let Some((port, path)) = url {
            e.notes.push(format!(
                "or `http = \"{path}\"` with `port = {port}`: gantry probes it from the host, no curl needed in the image"
            ));
        }
        s.health.push(e);
        for (k, val) in v.map().unwrap_or_default() {
            let key = k.str().unwrap_or("?");
            let p = format!("{path}.{key}");
            match key {
                "test" | "disable" => {}
                "interval" | "timeout" | "start_period" => self.duration_entry(key, val, &p, &mut s.health),
                "retries" => match val.str().and_then(|r| r.parse::<i64>().ok()) {
                    Some(r) => s.health.push(entry("retries", TVal::Int(r), val, &p)),
                    None => self.skip(val, &p, "not a number"),
                },
                "start_interval" => self.skip(k, &p, "gantry probes at `interval` after `start_period`; there is no faster start interval"),
                _ => self.skip(k, &p, "not a key of a Compose health check"),
            }
        }
    }

    fn logging(&mut self, v: &Node, path: &str, s: &mut Svc) {
        let driver = v.get("driver").and_then(text);
        if let Some(d) = driver.as_deref().filter(|d| *d != "json-file") {
            self.skip(v.get("driver").unwrap_or(v), &format!("{path}.driver"), format!("`{d}`: gantry sets the rotation of the json-file driver only (`log`), and leaves the engine's driver otherwise"));
            if let Some(opts) = v.get("options") {
                self.skip(
                    opts,
                    &format!("{path}.options"),
                    format!("options of the `{d}` driver"),
                );
            }
            return;
        }
        let mut fields = Vec::new();
        let mut line_at = v;
        for (k, val) in v.get("options").and_then(Node::map).unwrap_or_default() {
            let key = k.str().unwrap_or("?");
            let p = format!("{path}.options.{key}");
            match key {
                "max-size" => match val.str().map(ByteSize::from_str) {
                    Some(Ok(_)) => {
                        fields.push((
                            "max_size".to_string(),
                            TVal::Str(text(val).unwrap_or_default()),
                        ));
                        line_at = val;
                    }
                    _ => self.skip(val, &p, "not a size"),
                },
                "max-file" => match val.str().and_then(|n| n.parse::<i64>().ok()) {
                    Some(n) if n >= 1 => {
                        fields.push(("max_files".to_string(), TVal::Int(n)));
                        line_at = val;
                    }
                    _ => self.skip(val, &p, "not a number of files (at least 1)"),
                },
                _ => self.skip(
                    k,
                    &p,
                    "gantry sets `max-size` and `max-file` of the json-file driver only",
                ),
            }
        }
        for (k, _) in v.map().unwrap_or_default() {
            let key = k.str().unwrap_or("?");
            if !matches!(key, "driver" | "options") {
                self.skip(
                    k,
                    &format!("{path}.{key}"),
                    "not a key of Compose's `logging`",
                );
            }
        }
        if !fields.is_empty() {
            fields.sort_by(|a, b| a.0.cmp(&b.0));
            s.main.push(entry(
                "log",
                TVal::Inline(fields),
                line_at,
                &format!("{path}.options"),
            ));
        }
    }

    fn depends_on(&mut self, v: &Node, path: &str, s: &mut Svc) {
        let Some(deps) = names_and_options(v) else {
            self.skip(v, path, "expected a list or a mapping");
            return;
        };
        let mut names = Vec::new();
        for (dep, at, opts) in deps {
            let key = format!("{path}.{dep}");
            if let Some(opts) = opts {
                if let Some(c) = opts.get("condition") {
                    let done = c.str() == Some("service_completed_successfully");
                    if done && !self.tasks.contains_key(&dep) {
                        self.skip(c, &format!("{key}.condition"), "a service that must run to completion first is a one-off task in gantry: a `[task.NAME]` table (run from a service's image before it rolls); it was not made one because no service that waits for it runs the same image");
                        continue;
                    }
                }
                for (k, _) in opts.map().unwrap_or_default() {
                    let opt = k.str().unwrap_or("?");
                    if !matches!(opt, "condition") {
                        self.skip(k, &format!("{key}.{opt}"), "gantry's `depends_on` has no options: the services it names must be healthy before this one changes");
                    }
                }
            }
            if let Some((tname, host)) = self.tasks.get(&dep).cloned() {
                if host != self.current {
                    self.skip(
                        at,
                        &key,
                        format!("`{dep}` is the task `[task.{tname}]`, which runs before `{}` rolls; gantry has no dependency on a task for other services", self.names.get(&host).cloned().unwrap_or(host)),
                    );
                }
                continue;
            }
            match self.names.get(&dep) {
                Some(g) => names.push(g.clone()),
                None => self.skip(
                    at,
                    &key,
                    format!("`{dep}` is not a service of the imported configuration"),
                ),
            }
        }
        names.sort();
        names.dedup();
        if !names.is_empty() {
            s.main.push(entry("depends_on", strs(&names), v, path));
        }
    }

    fn duration_entry(&mut self, key: &str, v: &Node, path: &str, into: &mut Vec<Entry>) {
        match v.str().map(Duration::from_str) {
            Some(Ok(d)) => into.push(entry(key, TVal::Str(d.to_string()), v, path)),
            Some(Err(e)) => self.skip(v, path, e),
            None => self.skip(v, path, "expected a duration"),
        }
    }

    fn size_entry(&mut self, key: &str, v: &Node, path: &str, into: &mut Vec<Entry>) {
        match v.str().map(ByteSize::from_str) {
            Some(Ok(_)) => into.push(entry(key, TVal::Str(text(v).unwrap_or_default()), v, path)),
            Some(Err(e)) => self.skip(v, path, e),
            None => self.skip(v, path, "expected a size"),
        }
    }

    fn resource(&mut self, field: &str, v: &Node, path: &str, s: &mut Svc) {
        let value = match field {
            "cpus" => match v.str().and_then(|c| c.parse::<f64>().ok()) {
                Some(c) if c > 0.0 => TVal::Float(c),
                _ => {
                    self.skip(v, path, "not a number of CPUs");
                    return;
                }
            },
            _ => match v.str().map(ByteSize::from_str) {
                Some(Ok(_)) => TVal::Str(text(v).unwrap_or_default()),
                _ => {
                    self.skip(v, path, "not a size");
                    return;
                }
            },
        };
        if let Some(Entry {
            value: TVal::Inline(fields),
            ..
        }) = s.main.iter_mut().find(|e| e.key == "resources")
        {
            fields.push((field.to_string(), value));
            fields.sort_by(|a, b| a.0.cmp(&b.0));
        } else {
            s.main.push(entry(
                "resources",
                TVal::Inline(vec![(field.to_string(), value)]),
                v,
                path,
            ));
        }
    }

    fn deploy(&mut self, d: &Node, path: &str, replicas: i64, svc: &Node, s: &mut Svc) {
        let Some(entries) = d.map() else {
            self.skip(d, path, "expected a mapping");
            return;
        };
        for (k, v) in entries {
            let key = k.str().unwrap_or("?");
            let p = format!("{path}.{key}");
            match key {
                "replicas" | "mode" => {}
                "restart_policy" => self.restart_policy(v, &p, s),
                "resources" => {
                    for (kind, limits) in v.map().unwrap_or_default() {
                        let kind_s = kind.str().unwrap_or("?");
                        let kp = format!("{p}.{kind_s}");
                        for (f, val) in limits.map().unwrap_or_default() {
                            let field = f.str().unwrap_or("?");
                            let fp = format!("{kp}.{field}");
                            match (kind_s, field) {
                                ("limits", "cpus" | "memory") => self.resource(field, val, &fp, s),
                                ("limits", "pids") => self.skip(f, &fp, "gantry has no limit on the number of processes"),
                                ("reservations", _) => self.skip(f, &fp, "gantry sets limits (`resources = { cpus, memory }`), not reservations: a reservation only steers where Swarm schedules, and taking it as a limit would cap the service"),
                                _ => self.skip(f, &fp, "gantry limits CPUs and memory only"),
                            }
                        }
                        if limits.map().is_none() {
                            self.skip(kind, &kp, "gantry limits CPUs and memory only");
                        }
                    }
                }
                "update_config" => self.update_config(v, &p, replicas, svc, s),
                "rollback_config" => self.skip(k, &p, "a gantry rollback starts the previous revision's kept containers (`keep_previous`); there are no separate rollback settings"),
                "placement" => self.skip(k, &p, "gantry places services with `hosts = [...]` (names of `[[host]]`s), not constraints"),
                "labels" => self.skip(k, &p, "labels of the Swarm service object: gantry has no service object; container labels are `labels`"),
                "endpoint_mode" => match v.str() {
                    Some("dnsrr") => self.note(v.line, &p, "dnsrr: on gantry's project network the service's name resolves to its replicas, as with dnsrr"),
                    _ => self.skip(k, &p, "gantry has no virtual IP: on the project network the service's name resolves to each replica's address"),
                },
                _ => self.skip(k, &p, "not a key of Compose's `deploy`"),
            }
        }
    }

    fn restart_policy(&mut self, v: &Node, path: &str, s: &mut Svc) {
        let condition = v
            .get("condition")
            .and_then(text)
            .unwrap_or_else(|| "any".into());
        let max = v
            .get("max_attempts")
            .and_then(|m| m.str()?.parse::<u32>().ok());
        let policy = match condition.as_str() {
            "none" => "no".to_string(),
            "on-failure" => match max {
                Some(n) if n > 0 => format!("on-failure:{n}"),
                _ => "on-failure".to_string(),
            },
            "any" | "always" => "always".to_string(),
            "unless-stopped" => "unless-stopped".to_string(),
            other => {
                self.skip(
                    v,
                    path,
                    format!("condition `{other}`: not a restart condition"),
                );
                return;
            }
        };
        let at = v.get("condition").unwrap_or(v);
        s.main.push(entry(
            "restart",
            TVal::Str(policy),
            at,
            &format!("{path}.condition"),
        ));
        for (k, val) in v.map().unwrap_or_default() {
            let key = k.str().unwrap_or("?");
            let p = format!("{path}.{key}");
            match key {
                "condition" => {}
                "max_attempts" if condition == "on-failure" => {}
                "max_attempts" => self.skip(val, &p, "the engine counts restarts for `on-failure` only"),
                "delay" | "window" => self.skip(k, &p, "the engine restarts at once (with its own back-off); gantry has no restart delay or window"),
                _ => self.skip(k, &p, "not a key of a restart policy"),
            }
        }
    }

    fn update_config(&mut self, v: &Node, path: &str, replicas: i64, svc: &Node, s: &mut Svc) {
        let stop_first = stop_first_reason(svc, replicas);
        for (k, val) in v.map().unwrap_or_default() {
            let key = k.str().unwrap_or("?");
            let p = format!("{path}.{key}");
            match key {
                "parallelism" => match val.str().and_then(|n| n.parse::<i64>().ok()) {
                    Some(n) if n >= 0 => {
                        let batch = if n == 0 || n > replicas { replicas } else { n };
                        let mut e = entry("batch", TVal::Int(batch), val, &p);
                        if batch != n {
                            e.notes.push(format!("parallelism {n}: all {replicas} replicas at once"));
                        }
                        s.rollout.push(e);
                    }
                    _ => self.skip(val, &p, "not a number"),
                },
                "delay" => self.duration_entry("soak", val, &p, &mut s.rollout),
                "order" => match (val.str(), &stop_first) {
                    (Some("start-first"), Some(why)) => self.skip(val, &p, format!("start-first is refused for this service ({why}): gantry rolls it stop-first")),
                    (Some(o @ ("start-first" | "stop-first")), _) => s.rollout.push(entry("order", TVal::Str(o.into()), val, &p)),
                    _ => self.skip(val, &p, "not `start-first` or `stop-first`"),
                },
                "failure_action" => match val.str() {
                    Some(a @ ("rollback" | "pause")) => s.rollout.push(entry("on_failure", TVal::Str(a.into()), val, &p)),
                    Some(other) => self.skip(val, &p, format!("`{other}`: gantry stops at a failed batch, and rolls back (`rollback`) or stays (`pause`)")),
                    None => self.skip(val, &p, "expected a string"),
                },
                "monitor" => self.skip(k, &p, "gantry watches health for `soak` (mapped from `delay`) after each batch; there is no separate monitor window"),
                "max_failure_ratio" => self.skip(k, &p, "gantry stops at the first failed replica; no failure ratio is tolerated"),
                _ => self.skip(k, &p, "not a key of Compose's `update_config`"),
            }
        }
        s.rollout.sort_by_key(|e| {
            ["batch", "order", "soak", "on_failure"]
                .iter()
                .position(|o| *o == e.key)
        });
    }
}

/// Why gantry must roll this service stop-first (fixed host ports, a read-write named
/// volume, the host's network), in words, or `None`.
fn stop_first_reason(svc: &Node, replicas: i64) -> Option<String> {
    if svc.get("network_mode").and_then(Node::str) == Some("host") {
        return Some("it uses the host's network".into());
    }
    if replicas == 1 {
        let fixed = svc
            .get("ports")
            .and_then(Node::seq)
            .unwrap_or_default()
            .iter()
            .any(|p| {
                p.str()
                    .and_then(parse_port_short)
                    .is_some_and(|p| p.host.is_some_and(|(a, b)| a == b))
                    || p.get("published").is_some()
            });
        if fixed {
            return Some("a fixed host port".into());
        }
    }
    for item in svc.get("volumes").and_then(Node::seq).unwrap_or_default() {
        let named_rw = match item.str() {
            Some(t) => {
                let parts: Vec<&str> = t.split(':').collect();
                parts.len() >= 2
                    && !parts[0].starts_with(['/', '.', '~'])
                    && !parts
                        .get(2)
                        .is_some_and(|m| m.split(',').any(|m| m == "ro"))
            }
            None => {
                item.get("type").and_then(Node::str).unwrap_or("volume") == "volume"
                    && item.get("source").is_some()
                    && item.get("read_only").and_then(Node::bool) != Some(true)
            }
        };
        if named_rw {
            return Some("a read-write named volume".into());
        }
    }
    None
}

/// `[a, b]` or `{a: {...}, b:}` (Compose's two spellings of `networks` and `depends_on`):
/// each name, the node to point at, and its options in the mapping form. `None`: neither.
fn names_and_options(v: &Node) -> Option<Vec<(String, &Node, Option<&Node>)>> {
    match &v.value {
        Value::Seq(items) => Some(
            items
                .iter()
                .filter_map(|n| Some((text(n)?, n, None)))
                .collect(),
        ),
        Value::Map(entries) => Some(
            entries
                .iter()
                .filter_map(|(k, opts)| Some((text(k)?, k, Some(opts))))
                .collect(),
        ),
        _ => None,
    }
}

/// The batch the rollout will use: from `update_config.parallelism`, else 1.
fn rollout_batch(svc: &Node, replicas: i64) -> i64 {
    let n = svc
        .get("deploy")
        .and_then(|d| d.get("update_config"))
        .and_then(|u| u.get("parallelism"))
        .and_then(|p| p.str()?.parse::<i64>().ok())
        .unwrap_or(1);
    if n == 0 || n > replicas {
        replicas
    } else {
        n.max(1)
    }
}

fn is_external(def: &Node) -> bool {
    match def.get("external") {
        Some(e) => e.bool().unwrap_or(e.map().is_some()),
        None => false,
    }
}

fn extra_host_ip(node: &Node) -> Option<String> {
    match &node.value {
        Value::Seq(items) => items.first().and_then(text),
        _ => text(node),
    }
}

fn valid_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn write_key(name: &str) -> String {
    super::write::key(name)
}

/// `KEY: value` mappings and `KEY=value` lists alike: (key, value, node). A value of
/// `None` is a key without a value (`KEY` in a list, `KEY:` or `KEY: null` in a mapping).
fn key_values(v: &Node) -> Vec<(String, Option<String>, &Node)> {
    match &v.value {
        Value::Map(entries) => entries
            .iter()
            .filter_map(|(k, val)| {
                let value = match &val.value {
                    Value::Null => None,
                    Value::Scalar(s) => Some(s.text.clone()),
                    _ => return None,
                };
                Some((k.str()?.to_string(), value, val))
            })
            .collect(),
        Value::Seq(items) => items
            .iter()
            .filter_map(|n| {
                let t = n.str()?;
                Some(match t.split_once('=') {
                    Some((k, val)) => (k.to_string(), Some(val.to_string()), n),
                    None => (t.to_string(), None, n),
                })
            })
            .collect(),
        _ => Vec::new(),
    }
}
