//! Checks across services, run once every service was read: host ports, dependency cycles.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use super::Validator;
use crate::diag::{Diagnostic, list_names};
use crate::graph::{Address, ResourceGraph};
use crate::model::{PortRange, Protocol};

/// Host ports one service binds on its hosts: a `host_ports` range, a `publish` entry, or
/// the `port` of a service on the host's network.
pub(super) struct PortClaim {
    pub service: String,
    pub range: PortRange,
    pub protocol: Protocol,
    /// `None`: every address of the host.
    pub ip: Option<String>,
    pub hosts: Vec<String>,
    /// Where it is written.
    pub span: Range<usize>,
}

impl PortClaim {
    /// Two claims clash when their ports overlap for one protocol on one address: UDP and
    /// TCP on the same number do not, nor do two distinct addresses (unless one of them is
    /// every address).
    fn clashes(&self, other: &PortClaim) -> bool {
        let every = |ip: &Option<String>| {
            ip.as_ref().is_none_or(|ip| {
                ip.parse::<std::net::IpAddr>()
                    .is_ok_and(|a| a.is_unspecified())
            })
        };
        let same_ip = match (&self.ip, &other.ip) {
            (Some(a), Some(b)) => {
                match (a.parse::<std::net::IpAddr>(), b.parse::<std::net::IpAddr>()) {
                    (Ok(a), Ok(b)) => a == b,
                    _ => a == b,
                }
            }
            _ => false,
        };
        self.protocol == other.protocol
            && self.range.overlaps(&other.range)
            && (every(&self.ip) || every(&other.ip) || same_ip)
    }

    /// `18080-18089`, `8125/udp`, `127.0.0.1:8126`.
    fn describe(&self) -> String {
        let ip = match &self.ip {
            Some(ip) if ip.contains(':') => format!("[{ip}]:"),
            Some(ip) => format!("{ip}:"),
            None => String::new(),
        };
        let proto = match self.protocol {
            Protocol::Tcp => "",
            Protocol::Udp => "/udp",
        };
        format!("{ip}{}{proto}", self.range)
    }
}

impl Validator<'_> {
    pub(super) fn port_clashes(&mut self, claims: &[PortClaim]) {
        // A sweep over the ranges sorted by start: only ranges still open can overlap, so
        // 10,000 services with ports are not 5 * 10^7 comparisons. Of an overlapping pair,
        // the later declaration in the file is blamed.
        let mut order: Vec<usize> = (0..claims.len()).collect();
        order.sort_by_key(|&i| (claims[i].range.start, claims[i].span.start));
        let mut open: Vec<usize> = Vec::new();
        let mut pairs: Vec<(usize, usize)> = Vec::new();
        for &i in &order {
            open.retain(|&j| claims[j].range.end >= claims[i].range.start);
            for &j in &open {
                if !claims[i].clashes(&claims[j]) {
                    continue;
                }
                let (later, earlier) = if claims[i].span.start > claims[j].span.start {
                    (i, j)
                } else {
                    (j, i)
                };
                pairs.push((later, earlier));
            }
            open.push(i);
        }
        pairs.sort_by_key(|&(l, e)| (claims[l].span.start, claims[e].span.start));
        for (l, e) in pairs {
            let (later, earlier) = (&claims[l], &claims[e]);
            let shared: BTreeSet<&String> = later
                .hosts
                .iter()
                .filter(|h| earlier.hosts.contains(h))
                .collect();
            if shared.is_empty() {
                continue;
            }
            let (a, b) = (&later.service, &earlier.service);
            let (ra, rb) = (later.describe(), earlier.describe());
            let on = list_names(shared.iter().map(|s| s.as_str()));
            let d = if a == b {
                Diagnostic::at(
                    format!("duplicate host ports: service `{a}` binds {rb} and {ra}, which overlap"),
                    later.span.clone(),
                )
                .label(format!("overlaps {rb}"))
                .related(earlier.span.clone(), format!("{rb} here"))
                .help(format!("on {on} one host port can be bound once per protocol and address; remove one, or give it another port"))
            } else {
                Diagnostic::at(
                    format!("duplicate host ports: service `{a}` ({ra}) and service `{b}` ({rb}) overlap"),
                    later.span.clone(),
                )
                .label(format!("overlaps `{b}`"))
                .related(earlier.span.clone(), format!("`{b}` claims {rb} here"))
                .help(format!("both run on {on}; give each service its own host ports (UDP and TCP on one number, or two distinct host addresses, do not clash)"))
            };
            self.err(d);
        }
    }

    pub(super) fn cycles(&mut self, dep_spans: &BTreeMap<(String, String), Range<usize>>) {
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
