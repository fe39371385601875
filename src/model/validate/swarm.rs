//! The container options a Swarm service cannot have: Docker's service API (1.41, Docker
//! 20.10; the fields of bollard's `TaskSpecContainerSpec`) has no field for them. Each is
//! refused where it is written, saying why and what to do instead. What Swarm has is mapped
//! by `drivers::swarm::spec` (docs/hosts-and-swarm.md has the table).

use std::str::FromStr;

use super::{ServiceCtx, Validator};
use crate::config::TomlService;
use crate::diag::Diagnostic;
use crate::model::Publish;
use crate::model::swarm::SwarmTmpfs;

/// What to do instead of an option Swarm lacks: run the service as containers.
const AS_CONTAINERS: &str = "use `runtime = \"container\"` for this service (gantry then runs each replica as a container of its own, where this option exists)";

impl Validator<'_> {
    /// Refuses the container options of `t` that a Swarm service spec has no field for.
    pub(super) fn swarm_options(&mut self, ctx: &ServiceCtx<'_>, t: &TomlService) {
        let here = format!("service `{}`", ctx.name);
        let lacks =
            |what: &str| format!("{here} runs on Docker Swarm, whose service spec has no {what}");
        if t.privileged {
            // A plain boolean carries no span of its own: the service's table is where it is.
            self.err(
                Diagnostic::at(lacks("privileged mode"), ctx.span.clone())
                    .label("sets `privileged = true`")
                    .help(format!(
                        "grant what the process needs with `cap_add` (e.g. [\"SYS_ADMIN\"]), which Swarm has; or {AS_CONTAINERS}"
                    )),
            );
        }
        if let Some(d) = t.devices.first() {
            self.err(
                Diagnostic::at(lacks("host devices"), d.span())
                    .label("a device")
                    .help(format!("remove `devices`, or {AS_CONTAINERS}")),
            );
        }
        if let Some(p) = &t.pid {
            self.err(
                Diagnostic::at(lacks("PID namespace setting"), p.span())
                    .label("`pid`")
                    .help(format!("remove `pid`, or {AS_CONTAINERS}")),
            );
        }
        if let Some(m) = &t.network_mode
            && m.get_ref() == "none"
        {
            self.err(
                Diagnostic::at(
                    format!("{here} runs on Docker Swarm, which has no `none` network for services"),
                    m.span(),
                )
                .label("no network")
                .help(format!(
                    "leave `network_mode` out (the project's overlay network), or `network_mode = \"host\"`; or {AS_CONTAINERS}"
                )),
            );
        }
        if t.entrypoint.as_ref().is_some_and(Vec::is_empty) {
            self.err(
                Diagnostic::at(
                    format!("{here} runs on Docker Swarm, which cannot clear the image's ENTRYPOINT: `entrypoint = []` would leave it in place"),
                    ctx.span.clone(),
                )
                .label("sets `entrypoint = []`")
                .help("name the program instead, e.g. `entrypoint = [\"/app/server\"]` (with `command` as its arguments)"),
            );
        }
        for p in &t.publish {
            if let Ok(publish) = Publish::from_str(p.get_ref())
                && let Some(ip) = &publish.host_ip
            {
                self.err(
                    Diagnostic::at(
                        format!("{here} runs on Docker Swarm, which publishes a port on every address of every node: it cannot bind `{ip}` only"),
                        p.span(),
                    )
                    .label("a host address")
                    .help(format!(
                        "write \"{}:{}{}\" (the routing mesh answers on every node), or {AS_CONTAINERS}",
                        publish.host_port,
                        publish.container_port,
                        if publish.protocol == crate::model::Protocol::Udp { "/udp" } else { "" },
                    )),
                );
            }
        }
        for entry in &t.tmpfs {
            if let Err(e) = SwarmTmpfs::from_str(entry.get_ref()) {
                self.err(
                    Diagnostic::at(e, entry.span())
                        .label("not a Swarm tmpfs")
                        .help(
                            "write PATH[:size=SIZE,mode=OCTAL], e.g. \"/run:size=64m,mode=1777\"",
                        ),
                );
            }
        }
        if let Some(s) = &t.shm_size {
            let dev_shm = t
                .tmpfs
                .iter()
                .map(|e| e.get_ref().split(':').next().unwrap_or_default())
                .chain(
                    t.volumes
                        .iter()
                        .filter_map(|v| v.get_ref().split(':').nth(1)),
                )
                .any(|target| target.trim_end_matches('/') == "/dev/shm");
            if dev_shm {
                self.err(
                    Diagnostic::at(
                        format!("{here} sets `shm_size` and mounts something else at /dev/shm: on Docker Swarm, `shm_size` is a tmpfs mount at /dev/shm"),
                        s.span(),
                    )
                    .help("keep one of the two: `shm_size`, or the mount at /dev/shm"),
                );
            }
        }
    }
}
