//! `runtime = "swarm"` against a real single-node Docker Swarm (tests/it/support/swarm_engine.rs:
//! a swarm-mode dockerd of its own beside the main engine). What is asserted is what the
//! manager says (`docker service inspect`, the tasks and their timestamps), not gantry's log:
//!
//! - a rolling update v1 -> v2 of 3 replicas, one at a time, start-first, that Swarm reports
//!   `completed`, every running task on the v2 image ID; then `gantry rollback` back to v1;
//! - a bad image (its health check never passes): Swarm rolls the update back by itself,
//!   gantry exits 3 (failed, previous revision restored), Swarm says `rollback_completed` and
//!   the tasks run v1 again (what docker-stack-wait is for: `docker stack deploy` exits 0);
//! - a failure later in the same apply: the update that had completed is rolled back by
//!   Swarm at gantry's request (the journalled undo).
//!
//! Skipped (with a `SKIPPED:` line) where a second dockerd cannot run; fails under CI=true.

use std::ops::Deref;
use std::time::{Duration, Instant, SystemTime};

use crate::support::docker::{self, DockerTestGuard};
use crate::support::project::{Project, code, explain};
use crate::support::swarm_engine::{self, SwarmEngine};

/// A project whose one service runs on the swarm.
struct OnSwarm(Project);

impl Deref for OnSwarm {
    type Target = Project;
    fn deref(&self) -> &Project {
        &self.0
    }
}

impl OnSwarm {
    fn new(guard: &DockerTestGuard) -> OnSwarm {
        OnSwarm(Project::new("sw", guard))
    }

    /// The swarm service of this project.
    fn service(&self) -> String {
        format!("{}_web", self.name)
    }

    /// 3 replicas of the test app on the swarm, rolled one at a time, start-first, each new
    /// replica healthy (checked inside the container) and watched 2s before the next.
    fn write(&self, swarm: &SwarmEngine, tag: &str, extra_env: &str, extra: &str) {
        self.write_toml(&format!(
            r#"[project]
name = "{name}"

[[host]]
name = "manager"
docker = "{socket}"

[service.web]
runtime = "swarm"
image = "gantry-testapp:{tag}"
replicas = 3
env = {{ VERSION = "{tag}"{extra_env} }}
stop_grace_period = "2s"
health = {{ command = ["/testapp", "--healthcheck", "/healthz"], interval = "1s", timeout = "2s", retries = 2 }}
rollout = {{ batch = 1, order = "start-first", soak = "2s" }}
{extra}
"#,
            name = self.name,
            socket = swarm.socket,
        ));
    }

    fn state(&self) -> serde_json::Value {
        self.state_json()
    }
}

/// Builds the two test images in the main engine and loads them into the swarm engine;
/// returns `(tag, image ID)` of each.
fn images(swarm: &SwarmEngine) -> [(String, String); 2] {
    let tags = [docker::run_tag("v1"), docker::run_tag("v2")];
    let refs = docker::build_testapp_images_once(&[&tags[0], &tags[1]]);
    swarm.load_images(&[&refs[0], &refs[1]]);
    let id = |r: &str| swarm.docker_ok(&["image", "inspect", "--format", "{{.Id}}", r]);
    [
        (tags[0].clone(), id(&refs[0])),
        (tags[1].clone(), id(&refs[1])),
    ]
}

/// One task as the manager reports it.
#[derive(Debug)]
struct Task {
    image: String,
    desired: String,
    state: String,
    created: SystemTime,
}

fn tasks(swarm: &SwarmEngine, service: &str) -> Vec<Task> {
    let ids = swarm.docker_ok(&["service", "ps", "-q", "--no-trunc", service]);
    let ids: Vec<&str> = ids.split_whitespace().collect();
    let mut args = vec![
        "inspect",
        "--type",
        "task",
        "--format",
        "{{json .CreatedAt}} {{.Spec.ContainerSpec.Image}} {{.DesiredState}} {{.Status.State}}",
    ];
    args.extend(ids);
    swarm
        .docker_ok(&args)
        .lines()
        .map(|l| {
            let mut f = l.split_whitespace();
            let created = f.next().unwrap().trim_matches('"');
            Task {
                created: humantime::parse_rfc3339(created)
                    .unwrap_or_else(|e| panic!("task time {created}: {e}")),
                image: f.next().unwrap().to_string(),
                desired: f.next().unwrap().to_string(),
                state: f.next().unwrap().to_string(),
            }
        })
        .collect()
}

fn running_images(swarm: &SwarmEngine, service: &str) -> Vec<String> {
    let mut images: Vec<String> = tasks(swarm, service)
        .into_iter()
        .filter(|t| t.desired == "running" && t.state == "running")
        .map(|t| t.image)
        .collect();
    images.sort();
    images
}

fn update_state(swarm: &SwarmEngine, service: &str) -> String {
    swarm.docker_ok(&[
        "service",
        "inspect",
        "--format",
        "{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}",
        service,
    ])
}

#[test]
fn swarm_rolling_update_one_at_a_time_then_rollback_to_the_recorded_image() {
    let Some(swarm) = swarm_engine::require_swarm_engine("swarm_rolling_update") else {
        return;
    };
    let guard = DockerTestGuard::new();
    let [(v1, v1_id), (v2, v2_id)] = images(&swarm);
    let p = OnSwarm::new(&guard);
    let members = p.dir.path().join("members.log");
    // A load balancer of commands: the service's published address (the routing mesh) joins
    // it once, and stays through the update.
    let lb = format!(
        r#"
[lb.front]
kind = "command"
join = ["sh", "-c", "echo join {{address}}:{{port}} >> {log}"]
leave = ["sh", "-c", "echo leave {{address}}:{{port}} >> {log}"]
"#,
        log = members.display()
    );
    let published = docker::free_port();
    let with_lb = format!("port = 8080\nhost_ports = {published}\nlb = [\"front\"]\n{lb}");
    p.write(&swarm, &v1, "", &with_lb);

    let started = Instant::now();
    let o = p.gantry(&["apply", "--yes"]);
    assert_eq!(code(&o), 0, "create: {}", explain(&o));
    eprintln!(
        "create (3 replicas): {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let service = p.service();
    assert_eq!(running_images(&swarm, &service), vec![v1_id.clone(); 3]);
    assert_eq!(
        std::fs::read_to_string(&members).unwrap(),
        format!("join 127.0.0.1:{published}\n")
    );

    p.write(&swarm, &v2, "", &with_lb);
    let o = p.gantry(&["plan", "--detailed-exitcode"]);
    assert_eq!(code(&o), 2, "{}", explain(&o));
    let plan = String::from_utf8_lossy(&o.stdout);
    assert!(
        plan.contains("swarm service update: 3 replica(s), 1 at a time, start-first, 2s between batches, monitor 2s, on failure rollback"),
        "{plan}"
    );

    let before_update = SystemTime::now();
    let started = Instant::now();
    let o = p.gantry(&["apply", "--yes"]);
    let took = started.elapsed();
    assert_eq!(code(&o), 0, "update: {}", explain(&o));
    eprintln!(
        "rolling update v1 -> v2 (3 replicas, batch 1): {:.1}s",
        took.as_secs_f64()
    );

    // Through the engine: Swarm says the update completed, and every running task is v2.
    assert_eq!(update_state(&swarm, &service), "completed");
    assert_eq!(running_images(&swarm, &service), vec![v2_id.clone(); 3]);
    // One at a time: each v2 task was created after the previous one was healthy and had
    // taken traffic for the 2s soak (Swarm's parallelism 1, delay 2s).
    let mut created: Vec<SystemTime> = tasks(&swarm, &service)
        .into_iter()
        .filter(|t| t.image == v2_id && t.created >= before_update)
        .map(|t| t.created)
        .collect();
    created.sort();
    assert_eq!(created.len(), 3, "one v2 task per replica");
    for pair in created.windows(2) {
        let gap = pair[1].duration_since(pair[0]).unwrap();
        assert!(
            gap >= Duration::from_millis(2500),
            "v2 tasks created {gap:?} apart: not one at a time with a 2s soak after each"
        );
    }
    // The v1 tasks were shut down, not lost: Swarm keeps them in the task history.
    let v1_shut = tasks(&swarm, &service)
        .into_iter()
        .filter(|t| t.image == v1_id && t.desired == "shutdown")
        .count();
    assert_eq!(v1_shut, 3);
    // The address did not move: the load balancer was not touched.
    assert_eq!(
        std::fs::read_to_string(&members).unwrap(),
        format!("join 127.0.0.1:{published}\n")
    );
    let state = p.state();
    assert_eq!(state["swarm"]["web"]["image_id"], v2_id.as_str());
    assert_eq!(state["swarm"]["web"]["published_port"], published);
    assert_eq!(state["revision"], 2);

    // Rollback runs the image ID revision 1 recorded, through another Swarm update.
    let started = Instant::now();
    let o = p.gantry(&["rollback", "--yes"]);
    assert_eq!(code(&o), 0, "rollback: {}", explain(&o));
    eprintln!(
        "gantry rollback to revision 1: {:.1}s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(update_state(&swarm, &service), "completed");
    assert_eq!(running_images(&swarm, &service), vec![v1_id.clone(); 3]);
    assert_eq!(p.state()["swarm"]["web"]["image_id"], v1_id.as_str());

    // Destroy: the published address leaves the LB, then the service goes.
    std::fs::write(
        p.dir.path().join("gantry.toml"),
        format!(
            "[project]\nname = \"{}\"\n\n[[host]]\nname = \"manager\"\ndocker = \"{}\"\n",
            p.name, swarm.socket
        ),
    )
    .unwrap();
    let o = p.gantry(&["apply", "--yes"]);
    assert_eq!(code(&o), 0, "destroy: {}", explain(&o));
    assert!(
        !swarm
            .docker(&["service", "inspect", &service])
            .status
            .success(),
        "the swarm service is removed"
    );
    assert_eq!(
        std::fs::read_to_string(&members).unwrap(),
        format!("join 127.0.0.1:{published}\nleave 127.0.0.1:{published}\n")
    );
    assert!(p.state().get("swarm").is_none(), "no swarm record left");
}

#[test]
fn swarm_rolls_back_a_bad_image_and_gantry_exits_3() {
    let Some(swarm) = swarm_engine::require_swarm_engine("swarm_rolls_back_a_bad_image") else {
        return;
    };
    let guard = DockerTestGuard::new();
    let [(v1, v1_id), (v2, v2_id)] = images(&swarm);
    let p = OnSwarm::new(&guard);
    p.write(&swarm, &v1, "", "");
    let o = p.gantry(&["apply", "--yes"]);
    assert_eq!(code(&o), 0, "create: {}", explain(&o));
    let service = p.service();
    assert_eq!(running_images(&swarm, &service), vec![v1_id.clone(); 3]);

    // v2 never passes its health check: the first new task fails, Swarm rolls back.
    p.write(&swarm, &v2, ", NEVER_HEALTHY = \"1\"", "");
    let started = Instant::now();
    let o = p.gantry(&["apply", "--yes"]);
    let took = started.elapsed();
    eprintln!(
        "bad update, rolled back by Swarm: {:.1}s\n{}",
        took.as_secs_f64(),
        explain(&o)
    );
    assert_eq!(code(&o), 3, "a rolled back update: {}", explain(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("Swarm rolled the update back"), "{err}");
    assert!(
        err.contains("503"),
        "the failure names the failed health check: {err}"
    );
    assert!(
        err.contains("rollback_completed"),
        "the progress shows Swarm's rollback: {err}"
    );

    // Through the engine: the rollback completed and v1 runs again, 3 replicas.
    assert_eq!(update_state(&swarm, &service), "rollback_completed");
    assert_eq!(running_images(&swarm, &service), vec![v1_id.clone(); 3]);
    assert!(
        tasks(&swarm, &service)
            .iter()
            .any(|t| t.image == v2_id && t.desired == "shutdown"),
        "a v2 task was tried"
    );
    // The state still says revision 1, with v1, and the attempt is in the history.
    let state = p.state();
    assert_eq!(state["revision"], 1);
    assert_eq!(state["swarm"]["web"]["image_id"], v1_id.as_str());
    let last = state["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["outcome"], "rolled-back", "{last}");
    // Nothing left to do but the same bad change: the plan still wants v2.
    let o = p.gantry(&["plan", "--detailed-exitcode"]);
    assert_eq!(code(&o), 2, "{}", explain(&o));
}

/// A failure later in the same apply undoes a Swarm update that had completed: gantry has
/// Swarm roll it back to its previous spec (`docker service rollback`), from the journal.
#[test]
fn a_later_failure_has_swarm_roll_back_a_completed_update() {
    let Some(swarm) = swarm_engine::require_swarm_engine("swarm_later_failure") else {
        return;
    };
    let guard = DockerTestGuard::new();
    let [(v1, v1_id), (v2, v2_id)] = images(&swarm);
    let p = OnSwarm::new(&guard);
    // `api` depends on `web`: web is updated first (wave 1), then api (wave 2) fails.
    let write = |web: &str, api: &str, api_env: &str| {
        let service = |name: &str, tag: &str, env: &str, deps: &str| {
            format!(
                r#"
[service.{name}]
runtime = "swarm"
image = "gantry-testapp:{tag}"
replicas = 2
env = {{ VERSION = "{tag}"{env} }}
stop_grace_period = "2s"
depends_on = [{deps}]
health = {{ command = ["/testapp", "--healthcheck"], interval = "1s", timeout = "2s", retries = 2 }}
rollout = {{ batch = 2, order = "start-first" }}
"#
            )
        };
        let toml = format!(
            "[project]\nname = \"{}\"\n\n[[host]]\nname = \"manager\"\ndocker = \"{}\"\n{}{}",
            p.name,
            swarm.socket,
            service("web", web, "", ""),
            service("api", api, api_env, "\"web\""),
        );
        std::fs::write(p.dir.path().join("gantry.toml"), toml).unwrap();
    };
    write(&v1, &v1, "");
    let o = p.gantry(&["apply", "--yes"]);
    assert_eq!(code(&o), 0, "create: {}", explain(&o));
    let web = format!("{}_web", p.name);
    let api = format!("{}_api", p.name);

    write(&v2, &v2, ", NEVER_HEALTHY = \"1\"");
    let started = Instant::now();
    let o = p.gantry(&["apply", "--yes"]);
    eprintln!(
        "web updated, api rolled back by Swarm, web rolled back by gantry: {:.1}s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(code(&o), 3, "{}", explain(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("Swarm rolled {web} back")), "{err}");
    // Through the engine: web had completed its update to v2, and was rolled back to v1.
    assert_eq!(update_state(&swarm, &web), "rollback_completed");
    assert_eq!(running_images(&swarm, &web), vec![v1_id.clone(); 2]);
    assert!(
        tasks(&swarm, &web).iter().any(|t| t.image == v2_id),
        "web ran v2 before the rollback"
    );
    assert_eq!(update_state(&swarm, &api), "rollback_completed");
    assert_eq!(running_images(&swarm, &api), vec![v1_id.clone(); 2]);
    let state = p.state();
    assert_eq!(state["revision"], 1);
    assert_eq!(state["swarm"]["web"]["image_id"], v1_id.as_str());
    assert_eq!(state["swarm"]["api"]["image_id"], v1_id.as_str());
}
