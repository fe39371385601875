//! The load-balancer drivers of a run, built from the configuration and the state: which
//! adapter (nginx, HAProxy, commands) drives which `[lb]`, and which hosts' members it sees.

use std::collections::BTreeMap;
use std::path::Path;

use crate::model::{LbSpec, Model};
use crate::ports::LoadBalancer;
use crate::state::State;

/// A driver per load balancer gantry can drive, from the config and from the state (a load
/// balancer being removed is still left by its members).
pub fn drivers(
    model: &Model,
    state: Option<&State>,
    config_dir: &Path,
) -> BTreeMap<String, Box<dyn LoadBalancer>> {
    let mut specs: BTreeMap<String, LbSpec> = state
        .map(|s| {
            s.lbs
                .iter()
                .map(|(n, l)| (n.clone(), l.spec.clone()))
                .collect()
        })
        .unwrap_or_default();
    specs.extend(model.lbs.iter().map(|(n, l)| (n.clone(), l.clone())));
    let mut out: BTreeMap<String, Box<dyn LoadBalancer>> = BTreeMap::new();
    for (name, spec) in specs {
        if let LbSpec::Nginx {
            upstream,
            upstream_file,
            check,
            reload,
            at,
            max_fails,
            fail_timeout,
            keepalive,
            backup,
            weights,
        } = spec
        {
            let driver = super::nginx::Nginx {
                name: name.clone(),
                project: model.project.clone(),
                upstream,
                upstream_file: if at.is_empty() {
                    config_dir.join(upstream_file)
                } else {
                    upstream_file.into()
                },
                check,
                reload,
                max_fails,
                fail_timeout: fail_timeout.map(|d| d.0),
                keepalive,
                backup,
                weights,
            };
            let machines: Vec<_> = at
                .iter()
                .filter_map(|a| super::ssh::SshTarget::parse(a).ok())
                .collect();
            if machines.is_empty() {
                out.insert(name, Box::new(driver));
            } else {
                let remote = super::nginx_remote::RemoteNginx::new(driver, machines);
                out.insert(name, Box::new(remote));
            }
        } else if let LbSpec::Command {
            join,
            leave,
            drain_check,
            timeout,
        } = spec
        {
            let driver = super::command::CommandLb {
                join,
                leave,
                drain_check,
                timeout: timeout.0,
            };
            out.insert(name, Box::new(driver));
        } else if let LbSpec::Haproxy {
            socket,
            backend,
            at,
        } = spec
        {
            let machines: Vec<_> = at
                .iter()
                .filter_map(|a| super::ssh::SshTarget::parse(a).ok())
                .collect();
            if !machines.is_empty() {
                let remote = super::haproxy::RemoteHaproxy::new(machines, socket, backend);
                out.insert(name, Box::new(remote));
                continue;
            }
            let driver = super::haproxy::Haproxy {
                socket: if socket.starts_with("tcp://") {
                    socket.into()
                } else {
                    config_dir.join(socket)
                },
                backend,
            };
            out.insert(name, Box::new(driver));
        }
    }
    // Load balancers in front of some hosts only see those hosts' members.
    for (name, hosts) in &model.lb_hosts {
        if let Some(inner) = out.remove(name) {
            let scoped = super::scoped::HostScoped {
                inner,
                hosts: hosts.clone(),
            };
            out.insert(name.clone(), Box::new(scoped));
        }
    }
    out
}
