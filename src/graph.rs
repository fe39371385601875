//! The dependency graph of resources: services, and load balancers that depend on their
//! member services. It answers three questions: is there a cycle (and which, in full), in
//! which waves may resources proceed (each wave's members are independent of each other),
//! and what does it look like (DOT). It knows nothing of Docker.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::Model;

/// The two kinds of resources gantry manages.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ResourceKind {
    Service,
    Lb,
    /// A one-off task (`[task.NAME]`): runs before its service.
    Task,
}

/// `service.graphql`, `lb.front`: how resources are named in plans, steps and errors.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Address {
    pub kind: ResourceKind,
    pub name: String,
}

impl Address {
    pub fn service(name: impl Into<String>) -> Self {
        Address {
            kind: ResourceKind::Service,
            name: name.into(),
        }
    }
    pub fn lb(name: impl Into<String>) -> Self {
        Address {
            kind: ResourceKind::Lb,
            name: name.into(),
        }
    }
    pub fn task(name: impl Into<String>) -> Self {
        Address {
            kind: ResourceKind::Task,
            name: name.into(),
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix = match self.kind {
            ResourceKind::Service => "service",
            ResourceKind::Lb => "lb",
            ResourceKind::Task => "task",
        };
        write!(f, "{prefix}.{}", self.name)
    }
}

impl std::str::FromStr for Address {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once('.') {
            Some(("service", n)) if !n.is_empty() => Ok(Address::service(n)),
            Some(("lb", n)) if !n.is_empty() => Ok(Address::lb(n)),
            Some(("task", n)) if !n.is_empty() => Ok(Address::task(n)),
            _ => Err(format!(
                "invalid resource address `{s}` (expected `service.NAME`, `lb.NAME` or `task.NAME`)"
            )),
        }
    }
}

impl Serialize for Address {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Address {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Address".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^(service|lb|task)\\..+$",
            "description": "A resource address: `service.NAME`, `lb.NAME` or `task.NAME`."
        })
    }
}

/// Edges point from a dependency to its dependent: `a -> b` means `a` goes first.
#[derive(Debug, Clone)]
pub struct ResourceGraph {
    graph: DiGraph<Address, ()>,
    index: BTreeMap<Address, NodeIndex>,
}

impl ResourceGraph {
    /// Builds a graph from nodes and `(dependency, dependent)` edges; edges naming unknown
    /// nodes are ignored (validation reports them).
    pub fn new(
        nodes: impl IntoIterator<Item = Address>,
        edges: impl IntoIterator<Item = (Address, Address)>,
    ) -> Self {
        let mut graph = DiGraph::new();
        let mut index = BTreeMap::new();
        let mut nodes: Vec<Address> = nodes.into_iter().collect();
        nodes.sort();
        nodes.dedup();
        for node in nodes {
            let i = graph.add_node(node.clone());
            index.insert(node, i);
        }
        let mut edges: Vec<(Address, Address)> = edges.into_iter().collect();
        edges.sort();
        edges.dedup();
        for (from, to) in edges {
            if let (Some(&a), Some(&b)) = (index.get(&from), index.get(&to)) {
                graph.add_edge(a, b, ());
            }
        }
        ResourceGraph { graph, index }
    }

    /// Services (with their `depends_on`), load balancers (after their members) and tasks
    /// (after what they and their service depend on, before their service).
    pub fn from_model(model: &Model) -> Self {
        let nodes = model
            .services
            .keys()
            .map(Address::service)
            .chain(model.lbs.keys().map(Address::lb))
            .chain(model.tasks.keys().map(Address::task));
        let mut edges = Vec::new();
        for (name, task) in &model.tasks {
            edges.push((Address::task(name), Address::service(&task.service)));
            let service_deps = model
                .services
                .get(&task.service)
                .map(|s| s.depends_on.as_slice())
                .unwrap_or_default();
            for dep in service_deps.iter().chain(&task.depends_on) {
                edges.push((Address::service(dep), Address::task(name)));
            }
        }
        for (name, spec) in &model.services {
            for dep in &spec.depends_on {
                edges.push((Address::service(dep), Address::service(name)));
            }
            let preview = spec
                .rollout
                .blue_green
                .as_ref()
                .and_then(|b| b.preview_lb.as_ref());
            for lb in spec.lb.iter().chain(preview) {
                edges.push((Address::service(name), Address::lb(lb)));
            }
        }
        ResourceGraph::new(nodes, edges)
    }

    pub fn len(&self) -> usize {
        self.graph.node_count()
    }

    pub fn is_empty(&self) -> bool {
        self.graph.node_count() == 0
    }

    /// Every cycle's members in dependency order, closed: `[a, b, c, a]` reads
    /// "a depends on b, which depends on c, which depends on a". One cycle per strongly
    /// connected component, starting at its smallest address; deterministic.
    pub fn cycles(&self) -> Vec<Vec<Address>> {
        let mut out = Vec::new();
        for scc in tarjan_scc(&self.graph) {
            let members: BTreeSet<NodeIndex> = scc.iter().copied().collect();
            let Some(&start) = scc.iter().min_by_key(|i| &self.graph[**i]) else {
                continue;
            };
            let self_loop = self.graph.contains_edge(start, start);
            if members.len() < 2 && !self_loop {
                continue;
            }
            out.push(self.cycle_through(start, &members));
        }
        out.sort();
        out
    }

    /// Shortest walk from `start` back to itself along "depends on" (reverse edges).
    fn cycle_through(&self, start: NodeIndex, members: &BTreeSet<NodeIndex>) -> Vec<Address> {
        let mut parent: BTreeMap<NodeIndex, NodeIndex> = BTreeMap::new();
        let mut queue = VecDeque::from([start]);
        while let Some(node) = queue.pop_front() {
            for dep in self.sorted_dependencies(node) {
                if !members.contains(&dep) {
                    continue;
                }
                if dep == start {
                    // parent[x] is the node x was reached from: walk back to start.
                    let mut path = vec![node];
                    let mut at = node;
                    while at != start {
                        at = parent[&at];
                        path.push(at);
                    }
                    path.reverse();
                    path.push(start);
                    return path.into_iter().map(|i| self.graph[i].clone()).collect();
                }
                if let std::collections::btree_map::Entry::Vacant(e) = parent.entry(dep) {
                    e.insert(node);
                    queue.push_back(dep);
                }
            }
        }
        vec![self.graph[start].clone(), self.graph[start].clone()]
    }

    fn sorted_dependencies(&self, node: NodeIndex) -> Vec<NodeIndex> {
        let mut deps: Vec<NodeIndex> = self
            .graph
            .edges_directed(node, petgraph::Direction::Incoming)
            .map(|e| e.source())
            .collect();
        deps.sort_by(|a, b| self.graph[*a].cmp(&self.graph[*b]));
        deps.dedup();
        deps
    }

    /// Topological waves: wave N holds what depends only on waves before it; inside a
    /// wave, addresses are sorted. Resources on a cycle are left out (validation refuses
    /// cycles before anything asks for waves).
    pub fn waves(&self) -> Vec<Vec<Address>> {
        let mut indegree: Vec<usize> = self
            .graph
            .node_indices()
            .map(|n| {
                self.graph
                    .edges_directed(n, petgraph::Direction::Incoming)
                    .count()
            })
            .collect();
        let mut current: Vec<NodeIndex> = self
            .graph
            .node_indices()
            .filter(|n| indegree[n.index()] == 0)
            .collect();
        let mut waves = Vec::new();
        while !current.is_empty() {
            current.sort_by(|a, b| self.graph[*a].cmp(&self.graph[*b]));
            let mut next = Vec::new();
            for &n in &current {
                for e in self.graph.edges_directed(n, petgraph::Direction::Outgoing) {
                    let t = e.target();
                    indegree[t.index()] -= 1;
                    if indegree[t.index()] == 0 {
                        next.push(t);
                    }
                }
            }
            waves.push(current.iter().map(|n| self.graph[*n].clone()).collect());
            current = next;
        }
        waves
    }

    /// Direct dependencies of `addr`, sorted.
    pub fn dependencies(&self, addr: &Address) -> Vec<Address> {
        self.index
            .get(addr)
            .map(|&n| {
                self.sorted_dependencies(n)
                    .into_iter()
                    .map(|d| self.graph[d].clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Graphviz DOT, deterministic: nodes and edges sorted, one rank per wave.
    pub fn to_dot(&self, title: &str) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(out, "digraph {} {{", quote(title));
        let _ = writeln!(out, "  rankdir=LR;");
        let _ = writeln!(out, "  node [fontname=\"Helvetica\"];");
        for addr in self.index.keys() {
            let shape = match addr.kind {
                ResourceKind::Service => "box",
                ResourceKind::Lb => "diamond",
                ResourceKind::Task => "ellipse",
            };
            let _ = writeln!(out, "  {} [shape={shape}];", quote(&addr.to_string()));
        }
        let mut edges: Vec<(&Address, &Address)> = self
            .graph
            .edge_references()
            .map(|e| (&self.graph[e.source()], &self.graph[e.target()]))
            .collect();
        edges.sort();
        for (a, b) in edges {
            let _ = writeln!(
                out,
                "  {} -> {};",
                quote(&a.to_string()),
                quote(&b.to_string())
            );
        }
        for (i, wave) in self.waves().iter().enumerate() {
            let names: Vec<String> = wave.iter().map(|a| quote(&a.to_string())).collect();
            let _ = writeln!(
                out,
                "  {{ rank=same; /* wave {} */ {}; }}",
                i + 1,
                names.join("; ")
            );
        }
        out.push_str("}\n");
        out
    }
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(n: &str) -> Address {
        Address::service(n)
    }

    #[test]
    fn waves_are_layered_and_sorted_by_name() {
        let g = ResourceGraph::new(
            [
                svc("web"),
                svc("db"),
                svc("cache"),
                svc("api"),
                Address::lb("front"),
            ],
            [
                (svc("db"), svc("api")),
                (svc("cache"), svc("api")),
                (svc("api"), svc("web")),
                (svc("web"), Address::lb("front")),
            ],
        );
        let waves: Vec<Vec<String>> = g
            .waves()
            .iter()
            .map(|w| w.iter().map(ToString::to_string).collect())
            .collect();
        assert_eq!(
            waves,
            vec![
                vec!["service.cache", "service.db"],
                vec!["service.api"],
                vec!["service.web"],
                vec!["lb.front"],
            ]
        );
    }

    #[test]
    fn cycle_is_reported_whole_in_depends_on_direction() {
        // a depends on b, b on c, c on a: edges dependency -> dependent.
        let g = ResourceGraph::new(
            [svc("a"), svc("b"), svc("c"), svc("d")],
            [
                (svc("b"), svc("a")),
                (svc("c"), svc("b")),
                (svc("a"), svc("c")),
                (svc("a"), svc("d")),
            ],
        );
        let cycles = g.cycles();
        assert_eq!(cycles.len(), 1);
        let names: Vec<String> = cycles[0].iter().map(|a| a.name.clone()).collect();
        assert_eq!(names, ["a", "b", "c", "a"]);
    }

    #[test]
    fn self_dependency_is_a_cycle() {
        let g = ResourceGraph::new([svc("a")], [(svc("a"), svc("a"))]);
        assert_eq!(g.cycles(), vec![vec![svc("a"), svc("a")]]);
    }
}
