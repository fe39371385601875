//! Unit tests of the executor through the fakes of `crate::testing`: every port in memory,
//! tokio's clock paused (health checks, drains and soaks take no time), the journal and
//! every state save recorded. Each test says what it pins down.

mod adopted;
mod blue_green;
mod interrupt;
mod journal;
mod old_colour;
mod options;
mod restore;
mod swarm;
mod tasks;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use super::report::{Event, Reporter};
use super::{ApplyInputs, ApplyOutcome, Hold, RunEnv, Target};
use crate::plan::Plan;
use crate::ports::{ContainerState, LoadBalancer};
use crate::state::journal::Entry;
use crate::state::{Origin, ReplicaStatus, State};
use crate::testing::{FakeClock, FakeCommands, FakeLb, FakeProber, FakeRuntime, MemorySink};

/// The address replicas are published on: not loopback, so the executor's check that a
/// fixed host port is free does not bind real ports.
const HOST_IP: &str = "10.0.0.1";

/// Records progress events; sets the interrupt flag at a chosen step, as a Ctrl-C would.
#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<Event>>,
    /// `(step description, flag)`: the flag is set when this step finishes.
    interrupt_after: Mutex<Option<(String, Arc<AtomicBool>)>>,
}

impl Reporter for Recorder {
    fn event(&self, e: Event) {
        if let Event::StepFinished { step, .. } = &e
            && let Some((at, flag)) = &*lock(&self.interrupt_after)
            && step == at
        {
            flag.store(true, Ordering::SeqCst);
        }
        lock(&self.events).push(e);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One host `local` on a fake engine, LBs `front` and `preview`, and every other port faked.
struct World {
    rt: FakeRuntime,
    front: FakeLb,
    preview: FakeLb,
    prober: FakeProber,
    commands: FakeCommands,
    clock: FakeClock,
    sink: MemorySink,
    reporter: Recorder,
    hosts: BTreeMap<String, Target<FakeRuntime>>,
    lbs: BTreeMap<String, Box<dyn LoadBalancer>>,
    interrupt: Arc<AtomicBool>,
    keep_previous: u32,
    /// `[project] labels`.
    labels: BTreeMap<String, String>,
}

impl World {
    fn new() -> World {
        let rt = FakeRuntime::new();
        let (front, preview) = (FakeLb::new(), FakeLb::new());
        let prober = FakeProber::new();
        prober.healthy_host(HOST_IP);
        let commands = FakeCommands::new();
        commands.succeed("check");
        let hosts = BTreeMap::from([(
            "local".to_string(),
            Target {
                runtime: rt.clone(),
                address: HOST_IP.to_string(),
                swarm: None,
            },
        )]);
        let mut lbs: BTreeMap<String, Box<dyn LoadBalancer>> = BTreeMap::new();
        lbs.insert("front".into(), Box::new(front.clone()));
        lbs.insert("preview".into(), Box::new(preview.clone()));
        World {
            rt,
            front,
            preview,
            prober,
            commands,
            clock: FakeClock::default(),
            sink: MemorySink::new(),
            reporter: Recorder::default(),
            hosts,
            lbs,
            interrupt: Arc::new(AtomicBool::new(false)),
            keep_previous: 1,
            labels: BTreeMap::from([("team".to_string(), "games".to_string())]),
        }
    }

    fn env(&self) -> RunEnv<'_, FakeRuntime> {
        RunEnv {
            project: "p",
            hosts: &self.hosts,
            prober: &self.prober,
            commands: &self.commands,
            clock: &self.clock,
            reporter: &self.reporter,
            sink: &self.sink,
            lbs: &self.lbs,
            keep_previous: self.keep_previous,
            labels: &self.labels,
            interrupt: &self.interrupt,
        }
    }

    /// The plan of `toml` against `state`, its images put on the host.
    fn plan(&self, toml: &str, state: &State) -> (Plan, BTreeMap<String, String>) {
        let model = crate::testing::model(toml);
        let image_ids = model
            .services
            .values()
            .map(|s| (s.image.clone(), self.rt.add_image(&s.image)))
            .collect();
        (crate::plan::plan(&model, Some(state), "sha"), image_ids)
    }

    /// What an `apply` session does: begin the journal, then run the plan.
    async fn apply(&self, toml: &str, state: State, hold: Hold) -> (ApplyOutcome, State) {
        let (plan, image_ids) = self.plan(toml, &state);
        self.sink.begin(Entry::Begin {
            revision: state.next_revision(),
            origin: Origin::Apply,
            pid: 1,
            host: "test".into(),
            at: crate::ports::Clock::rfc3339(&self.clock),
            prior: Box::new(state.clone()),
        });
        let env = BTreeMap::new();
        let inputs = ApplyInputs {
            env: &env,
            image_ids: &image_ids,
            image_digests: &BTreeMap::new(),
            origin: Origin::Apply,
            hold,
        };
        super::apply(&plan, state, &self.env(), &inputs).await
    }

    /// Applies and expects success.
    async fn applied(&self, toml: &str, state: State) -> State {
        let (outcome, state) = self.apply(toml, state, Hold::No).await;
        assert!(
            matches!(outcome, ApplyOutcome::Succeeded { .. }),
            "{outcome:?}"
        );
        state
    }

    /// Sets the interrupt flag when the step described `step` finishes.
    fn interrupt_after(&self, step: &str) {
        *lock(&self.reporter.interrupt_after) = Some((step.to_string(), self.interrupt.clone()));
    }

    /// `service` replicas in the state: `(name, status, host port)`, sorted by name.
    fn replicas(state: &State, service: &str) -> Vec<(String, ReplicaStatus, Option<u16>)> {
        let mut out: Vec<_> = state.services[service]
            .replicas
            .iter()
            .map(|r| (r.name.clone(), r.status, r.host_port))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// `HOST_IP:port` of the running container `name`.
    fn address_of(&self, name: &str) -> String {
        let c = self.rt.by_name(name).expect("container");
        assert_eq!(c.state, ContainerState::Running, "{name}");
        format!("{HOST_IP}:{}", c.host_port.expect("published"))
    }
}

fn empty() -> State {
    State::empty("p", "lineage".into())
}

/// A service `web` of `replicas` replicas behind `front`, rolled `rollout`, running `tag`.
fn web(tag: &str, replicas: u32, rollout: &str) -> String {
    format!(
        r#"[project]
name = "p"

[lb.front]
kind = "command"
join = ["true"]
leave = ["true"]

[service.web]
image = "app:{tag}"
replicas = {replicas}
port = 8080
lb = ["front"]
health = {{ http = "/healthz", interval = "100ms", timeout = "1s", retries = 3 }}

[service.web.rollout]
drain = "1s"
{rollout}
"#
    )
}
