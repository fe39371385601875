//! `[task.NAME]`: the service it runs from, its command, when it runs, how long it may take,
//! and what it waits for; and the cycles a task closes (it goes after what it and its service
//! depend on, and before its service).

use super::*;
use crate::config::{Named, TomlTask};
use crate::graph::{Address, ResourceGraph, ResourceKind};

/// How long a task may run when `timeout` is not given.
pub const DEFAULT_TASK_TIMEOUT: Duration = Duration(std::time::Duration::from_secs(600));

impl Validator<'_> {
    pub(super) fn task(
        &mut self,
        named: &Named<TomlTask>,
        services: &BTreeSet<&str>,
        specs: &BTreeMap<String, ServiceSpec>,
    ) -> Option<TaskSpec> {
        self.name("task", &named.name, &named.span);
        let t = named.value.as_ref()?;
        let here = format!("task `{}`", named.name);
        let known = self.reference("service", &t.service, services, &here);
        if let Some(spec) = specs.get(t.service.get_ref())
            && spec.runtime == Runtime::Swarm
        {
            self.err(
                Diagnostic::at(
                    format!(
                        "{here} runs from service `{}`, which runs on Docker Swarm",
                        t.service.get_ref()
                    ),
                    t.service.span(),
                )
                .label("a Swarm service")
                .help("tasks run as containers on the service's first host; give the task a container service (`runtime = \"container\"`)"),
            );
        }
        let command = self.command(Some(t.command.get_ref()), "command", &t.command.span());
        let run = self.keyword(
            t.run.as_ref(),
            "run",
            &["on-change", "always"],
            |w| match w {
                "on-change" => Some(TaskRun::OnChange),
                "always" => Some(TaskRun::Always),
                _ => None,
            },
            TaskRun::OnChange,
        );
        let timeout = self.duration(t.timeout.as_ref(), DEFAULT_TASK_TIMEOUT);
        if let Some(s) = &t.timeout
            && timeout.0.is_zero()
        {
            self.err(
                Diagnostic::at("`timeout` of a task must be more than 0", s.span())
                    .label("no time to run")
                    .help("give it as long as the slowest run may take, e.g. `timeout = \"5m\"`"),
            );
        }
        let mut depends_on = Vec::new();
        for dep in &t.depends_on {
            if self.reference("service", dep, services, &here) {
                depends_on.push(dep.get_ref().clone());
            }
        }
        depends_on.sort();
        depends_on.dedup();
        Some(TaskSpec {
            service: t.service.get_ref().clone(),
            command: command?,
            depends_on,
            run,
            timeout,
        })
        .filter(|_| known)
    }

    /// Cycles through a task: it goes after its `depends_on` and what its service depends
    /// on, and before its service, so a task that waits for its own service (or for one that
    /// depends on it) can never run. Cycles of services alone are reported by `cycles`.
    pub(super) fn task_cycles(
        &mut self,
        tasks: &[Named<TomlTask>],
        service_deps: &BTreeMap<(String, String), Range<usize>>,
    ) {
        let mut edges: Vec<(Address, Address)> = service_deps
            .keys()
            .map(|(svc, dep)| (Address::service(dep), Address::service(svc)))
            .collect();
        let mut spans: BTreeMap<String, Range<usize>> = BTreeMap::new();
        for named in tasks {
            let Some(t) = &named.value else { continue };
            let task = Address::task(&named.name);
            let service = t.service.get_ref();
            edges.push((task.clone(), Address::service(service)));
            for ((svc, dep), _) in service_deps.iter().filter(|((s, _), _)| s == service) {
                debug_assert_eq!(svc, service);
                edges.push((Address::service(dep), task.clone()));
            }
            for dep in &t.depends_on {
                edges.push((Address::service(dep.get_ref()), task.clone()));
                spans.insert(named.name.clone(), dep.span());
            }
            spans.entry(named.name.clone()).or_insert(t.service.span());
        }
        let nodes: Vec<Address> = edges
            .iter()
            .flat_map(|(a, b)| [a.clone(), b.clone()])
            .collect();
        let graph = ResourceGraph::new(nodes, edges);
        for cycle in graph.cycles() {
            let Some(task) = cycle.iter().find(|a| a.kind == ResourceKind::Task) else {
                continue;
            };
            let path: Vec<String> = cycle.iter().map(ToString::to_string).collect();
            let span = spans.get(&task.name).cloned().unwrap_or(0..0);
            self.err(
                Diagnostic::at(
                    format!("dependency cycle through {task}: {}", path.join(" -> ")),
                    span,
                )
                .label("this closes the cycle")
                .help("a task runs before its service and after what it waits for: it cannot wait for its own service, nor for a service that depends on it"),
            );
        }
    }
}
