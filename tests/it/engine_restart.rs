//! A real engine restart (issue 12, "Restart policy"): a `dockerd` of the test's own (see
//! `support::private_engine`) runs a service of 2 replicas, revision 2 running and revision 1
//! kept stopped for a rollback; `dockerd` is stopped with `SIGTERM` (it stops every container
//! on the way out, as at a reboot) and started again on the same data root.
//!
//! What is pinned down: the running replicas come back by themselves, on the host ports they
//! had (gantry fixes each replica's host port at create: an engine-chosen one would change),
//! and answer there; the kept ones stay stopped, because gantry set their restart policy to
//! `no` when it kept them; `gantry rollback` then starts the kept ones and gives them the
//! service's policy back. With `restart = "always"` (which Docker applies at engine start
//! even to containers someone stopped) the `no` of the kept ones is what keeps them stopped:
//! a control container of that policy, stopped with `docker stop` but left its policy, does
//! come back (and one with `unless-stopped` does not), which shows the restart exercised
//! what Docker does at engine start.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::support;
use crate::support::docker::{self, DockerTestGuard};
use crate::support::private_engine::{PrivateEngine, require_private_engine};
use crate::support::project::{Project, code, explain};

/// How long the replicas may take to run and answer again once the engine answers.
const BACK_WITHIN: Duration = Duration::from_secs(30);

/// One container of the project, as the engine reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Container {
    name: String,
    /// `running`, `exited`, ...
    status: String,
    /// `HostConfig.RestartPolicy.Name`.
    policy: String,
    /// The host port of 8080/tcp from its port bindings (what it is created with).
    bound_port: u16,
    /// The `dev.gantry.host-port` label.
    label_port: u16,
    /// `State.StartedAt`: changes at each start.
    started_at: String,
}

impl Container {
    fn revision(&self) -> u64 {
        // `<project>-web-<revision>-<index>`
        let mut parts = self.name.rsplit('-');
        parts.next();
        parts.next().and_then(|r| r.parse().ok()).unwrap_or(0)
    }
}

struct Fixture {
    engine: PrivateEngine,
    v1: String,
    v2: String,
    restart: Option<&'static str>,
    /// `--label` arguments of the test's guard, for the test's own containers.
    label_args: Vec<String>,
    p: Project,
}

impl Fixture {
    fn new(test: &str, guard: &DockerTestGuard, restart: Option<&'static str>) -> Option<Self> {
        let engine = require_private_engine(test)?;
        let tags = [
            docker::run_tag(&format!("{test}-v1")),
            docker::run_tag(&format!("{test}-v2")),
        ];
        let images = docker::build_testapp_images_once(&[&tags[0], &tags[1]]);
        engine.load_images(&[&images[0], &images[1]]);
        Some(Fixture {
            engine,
            v1: images[0].clone(),
            v2: images[1].clone(),
            restart,
            label_args: guard.label_args(),
            p: Project::new("er", guard),
        })
    }

    /// Service `web`: 2 replicas of `image` on the private engine, `restart` if given (the
    /// default otherwise), `keep_previous` its default (1).
    fn write(&self, image: &str) {
        let version = if image == self.v1 { "v1" } else { "v2" };
        let restart = self
            .restart
            .map(|r| format!("restart = \"{r}\"\n"))
            .unwrap_or_default();
        self.p.write_toml(&format!(
            r#"[project]
name = "{name}"

{host}
[service.web]
image = "{image}"
replicas = 2
port = 8080
env = {{ VERSION = "{version}" }}
labels = {labels}
stop_grace_period = "2s"
{restart}health = {{ http = "/healthz", interval = "100ms", timeout = "1s", retries = 50 }}
"#,
            name = self.p.name,
            host = self.engine.host_toml("h"),
            labels = self.p.labels,
        ));
    }

    fn gantry_ok(&self, args: &[&str]) {
        let o = self.p.gantry(args);
        assert_eq!(
            code(&o),
            0,
            "gantry {}: {}\n--- engine log\n{}",
            args.join(" "),
            explain(&o),
            self.engine.log_tail(30)
        );
    }

    /// The project's containers on the private engine, by name.
    fn containers(&self) -> BTreeMap<String, Container> {
        let filter = support::project::label_filter(&self.p.name);
        let ids = self.engine.docker_ok(&["ps", "-aq", "--filter", &filter]);
        if ids.is_empty() {
            return BTreeMap::new();
        }
        let format = "{{.Name}}|{{.State.Status}}|{{.HostConfig.RestartPolicy.Name}}|\
                      {{range (index .HostConfig.PortBindings \"8080/tcp\")}}{{.HostPort}}{{end}}|\
                      {{index .Config.Labels \"dev.gantry.host-port\"}}|{{.State.StartedAt}}";
        let mut args = vec!["inspect", "--format", format];
        args.extend(ids.split_whitespace());
        self.engine
            .docker_ok(&args)
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split('|').collect();
                let c = Container {
                    name: f[0].trim_start_matches('/').to_string(),
                    status: f[1].to_string(),
                    policy: f[2].to_string(),
                    bound_port: f[3].parse().unwrap_or(0),
                    label_port: f[4].parse().unwrap_or(0),
                    started_at: f[5].to_string(),
                };
                (c.name.clone(), c)
            })
            .collect()
    }

    /// The replicas of `revision`.
    fn of(&self, all: &BTreeMap<String, Container>, revision: u64) -> Vec<Container> {
        all.values()
            .filter(|c| c.revision() == revision)
            .cloned()
            .collect()
    }

    /// `host_port` of each replica in gantry's state, by container name.
    fn state_ports(&self) -> BTreeMap<String, u16> {
        fn walk(v: &serde_json::Value, out: &mut BTreeMap<String, u16>) {
            match v {
                serde_json::Value::Object(m) => {
                    if let (Some(name), Some(_), Some(port)) = (
                        m.get("name").and_then(|n| n.as_str()),
                        m.get("container_id"),
                        m.get("host_port").and_then(|p| p.as_u64()),
                    ) {
                        out.insert(name.to_string(), port as u16);
                    }
                    m.values().for_each(|v| walk(v, out));
                }
                serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
                _ => {}
            }
        }
        let mut out = BTreeMap::new();
        walk(&self.p.state_json(), &mut out);
        out
    }

    /// The policy gantry gives running replicas: the service's.
    fn service_policy(&self) -> &'static str {
        self.restart.unwrap_or("unless-stopped")
    }

    /// Asserts: 2 replicas of `running` run with the service's policy, each answering
    /// `/version` with `version` on its fixed host port (label, binding and state agree);
    /// 2 of `kept` exited with policy `no`. Returns the running ones.
    fn assert_running_and_kept(&self, running: u64, kept: u64, version: &str) -> Vec<Container> {
        let all = self.containers();
        let state = self.state_ports();
        let up = self.of(&all, running);
        assert_eq!(up.len(), 2, "revision {running}: {all:#?}");
        for c in &up {
            assert_eq!(c.status, "running", "{c:#?}");
            assert_eq!(c.policy, self.service_policy(), "{c:#?}");
            assert!(c.bound_port != 0, "{c:#?}: no fixed host port");
            assert_eq!(c.bound_port, c.label_port, "{c:#?}");
            assert_eq!(state.get(&c.name), Some(&c.bound_port), "state: {state:?}");
            assert_eq!(
                self.version_at(c.bound_port).as_deref(),
                Ok(version),
                "{c:#?}"
            );
        }
        let down = self.of(&all, kept);
        assert_eq!(down.len(), 2, "revision {kept}: {all:#?}");
        for c in &down {
            assert_eq!(c.status, "exited", "{c:#?}");
            assert_eq!(c.policy, "no", "kept for a rollback: {c:#?}");
        }
        up
    }

    fn version_at(&self, port: u16) -> Result<String, String> {
        support::http::get(&format!("127.0.0.1:{port}"), "/version")
            .map(|r| r.text())
            .map_err(|e| e.to_string())
    }

    fn run(&self) {
        self.write(&self.v1);
        self.gantry_ok(&["apply", "--yes", "--progress", "plain"]);
        self.write(&self.v2);
        self.gantry_ok(&["apply", "--yes", "--progress", "plain"]);
        let v2_before = self.assert_running_and_kept(2, 1, "v2");
        let before = self.containers();
        // The control: a container of the service's policy that someone stopped, as gantry
        // stops the kept ones, but whose policy nobody changed. Docker starts it again at
        // engine start with `always` (not with `unless-stopped`): so with `always`, only the
        // `no` gantry gave the kept ones keeps them stopped.
        let control = format!("{}-control", self.p.name);
        let mut run = vec!["run", "-d", "--name", &control];
        run.extend(self.label_args.iter().map(String::as_str));
        let policy = format!("--restart={}", self.service_policy());
        run.extend([policy.as_str(), self.v1.as_str()]);
        self.engine.docker_ok(&run);
        self.engine.docker_ok(&["stop", "-t", "2", &control]);

        let down = self.engine.restart();
        let back_from = Instant::now();
        // The engine answers; its restart manager starts what its policies say.
        let deadline = back_from + BACK_WITHIN;
        let v2_after = loop {
            let all = self.containers();
            let up = self.of(&all, 2);
            let answering = up.iter().all(|c| {
                c.status == "running" && self.version_at(c.bound_port).as_deref() == Ok("v2")
            });
            if up.len() == 2 && answering {
                break up;
            }
            assert!(
                Instant::now() < deadline,
                "the running replicas did not come back within {BACK_WITHIN:?} of the engine's restart: {all:#?}\n--- engine log\n{}",
                self.engine.log_tail(40)
            );
            std::thread::sleep(Duration::from_millis(200));
        };
        let back = back_from.elapsed();
        for (b, a) in v2_before.iter().zip(&v2_after) {
            assert_eq!(b.name, a.name);
            assert_eq!(
                b.bound_port, a.bound_port,
                "the host port changed: {b:#?} {a:#?}"
            );
            assert_ne!(b.started_at, a.started_at, "not restarted? {a:#?}");
        }
        // Everything the engine starts at its start is started by now; the kept replicas
        // were not (`StartedAt` unchanged).
        std::thread::sleep(Duration::from_secs(2));
        self.assert_running_and_kept(2, 1, "v2");
        let after = self.containers();
        for c in self.of(&before, 1) {
            assert_eq!(
                after[&c.name].started_at, c.started_at,
                "a kept replica was started by the engine: {:#?}",
                after[&c.name]
            );
        }
        let control_status =
            self.engine
                .docker_ok(&["inspect", "--format", "{{.State.Status}}", &control]);
        let want = if self.service_policy() == "always" {
            "running"
        } else {
            "exited"
        };
        assert_eq!(
            control_status,
            want,
            "the control container (--restart={}, stopped) after the engine restart",
            self.service_policy()
        );
        eprintln!(
            "engine down {:.1}s; both replicas running again and answering on their ports {:?} {:.1}s after it answered",
            down.as_secs_f64(),
            v2_after.iter().map(|c| c.bound_port).collect::<Vec<_>>(),
            back.as_secs_f64()
        );

        // The kept ones are a rollback's: started on their own ports, the service's policy
        // back; revision 2's are now the kept ones, with `no`.
        let v1_ports: Vec<u16> = self.of(&before, 1).iter().map(|c| c.label_port).collect();
        self.gantry_ok(&["rollback", "--yes", "--progress", "plain"]);
        let all = self.containers();
        let v1 = self.of(&all, 1);
        assert_eq!(v1.len(), 2, "{all:#?}");
        for c in &v1 {
            assert_eq!(c.status, "running", "{c:#?}");
            assert_eq!(c.policy, self.service_policy(), "{c:#?}");
            assert_eq!(self.version_at(c.bound_port).as_deref(), Ok("v1"), "{c:#?}");
        }
        assert_eq!(
            v1.iter().map(|c| c.bound_port).collect::<Vec<_>>(),
            v1_ports,
            "a rollback starts the kept replicas on their own ports"
        );
        for c in self.of(&all, 2) {
            assert_eq!(c.status, "exited", "{c:#?}");
            assert_eq!(c.policy, "no", "kept for a rollback now: {c:#?}");
        }
    }
}

#[test]
fn an_engine_restart_brings_running_replicas_back_on_their_ports_and_leaves_kept_ones_stopped() {
    let test = "an_engine_restart_brings_running_replicas_back";
    let guard = DockerTestGuard::new();
    let Some(f) = Fixture::new(test, &guard, None) else {
        return;
    };
    f.run();
}

#[test]
fn with_restart_always_kept_replicas_still_stay_stopped_across_an_engine_restart() {
    let test = "with_restart_always_kept_replicas_stay_stopped";
    let guard = DockerTestGuard::new();
    let Some(f) = Fixture::new(test, &guard, Some("always")) else {
        return;
    };
    f.run();
}
