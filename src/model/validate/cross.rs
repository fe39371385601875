//! Checks across services, run once every service was read: host ports, dependency cycles.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use super::Validator;
use crate::diag::{Diagnostic, list_names};
use crate::graph::{Address, ResourceGraph};
use crate::model::PortRange;

impl Validator<'_> {
    pub(super) fn port_clashes(
        &mut self,
        claims: &[(String, PortRange, Vec<String>, Range<usize>)],
    ) {
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
