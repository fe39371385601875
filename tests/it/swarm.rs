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
//!   Swarm at gantry's request (the journalled undo);
//! - the container options of a service (volumes, restart, health command, user, read-only
//!   root with tmpfs, capabilities, sysctls, ulimits, ...) reach the Swarm spec and the task
//!   containers, on the project's overlay network that gantry creates with its labels; a
//!   service on the host's network beside it.
//! - a stack deployed by `docker stack deploy` is adopted (`gantry adopt --stack`) with no task
//!   restarted, then updated and rolled back through the same Swarm service.
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

/// `docker ... inspect --format '{{json X}}'` on the swarm engine, parsed.
fn inspect_json(swarm: &SwarmEngine, args: &[&str]) -> serde_json::Value {
    let out = swarm.docker_ok(args);
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
}

/// The running task containers of a service, on the (single) swarm node.
fn task_containers(swarm: &SwarmEngine, service: &str) -> Vec<String> {
    swarm
        .docker_ok(&[
            "ps",
            "-q",
            "--filter",
            &format!("label=com.docker.swarm.service.name={service}"),
        ])
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

#[test]
fn swarm_container_options_reach_the_service_spec_on_the_project_overlay_network() {
    let Some(swarm) = swarm_engine::require_swarm_engine("swarm_container_options") else {
        return;
    };
    let guard = DockerTestGuard::new();
    let [(v1, v1_id), _] = images(&swarm);
    let p = OnSwarm::new(&guard);
    let (udp, tcp, agent_port) = (
        docker::free_port(),
        docker::free_port(),
        docker::free_port(),
    );
    let write = |cap_add: &str, restart: &str| {
        p.write_toml(&format!(
            r#"[project]
name = "{name}"

[[host]]
name = "manager"
docker = "{socket}"

[service.web]
runtime = "swarm"
image = "gantry-testapp:{v1}"
replicas = 2
env = {{ VERSION = "{v1}" }}
stop_grace_period = "2s"
volumes = ["data:/data", "/etc:/host-etc:ro"]
restart = "{restart}"
health = {{ command = ["/testapp", "--healthcheck"], interval = "1s", timeout = "2s", retries = 2 }}
user = "1000:1000"
working_dir = "/data"
read_only = true
tmpfs = ["/tmp:size=16m,mode=1777"]
shm_size = "32m"
init = true
cap_drop = ["ALL"]
cap_add = [{cap_add}]
sysctls = {{ "net.core.somaxconn" = 1024 }}
ulimits = {{ nofile = {{ soft = 1000, hard = 2000 }} }}
extra_hosts = ["metadata:169.254.169.254"]
publish = ["{udp}:8125/udp", "{tcp}:8080"]

[service.agent]
runtime = "swarm"
image = "gantry-testapp:{v1}"
env = {{ PORT = "{agent_port}" }}
network_mode = "host"
stop_grace_period = "1s"
health = {{ command = ["/testapp", "--healthcheck"], interval = "1s", timeout = "2s", retries = 2 }}
"#,
            name = p.name,
            socket = swarm.socket,
        ));
    };
    // An external network the manager lacks: pre-flight says so, nothing is created.
    write("", "on-failure:5");
    let toml = p.toml().replace(
        "restart = \"on-failure:5\"",
        "restart = \"on-failure:5\"\nnetworks = [\"no-such-net\"]",
    );
    p.write_toml(&toml);
    let o = p.gantry(&["apply", "--yes"]);
    assert_eq!(code(&o), 1, "{}", explain(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("host `manager` has no network `no-such-net`")
            && err.contains("nothing was changed"),
        "{err}"
    );
    // (Other tests share the swarm engine: this project's names only.)
    for name in [p.service(), format!("{}_agent", p.name)] {
        assert!(
            !swarm
                .docker(&["service", "inspect", &name])
                .status
                .success(),
            "{name} was not created"
        );
    }
    assert!(
        !swarm
            .docker(&["network", "inspect", &format!("{}_default", p.name)])
            .status
            .success(),
        "no network created"
    );

    write("", "on-failure:5");
    let started = Instant::now();
    let o = p.gantry(&["apply", "--yes"]);
    assert_eq!(code(&o), 0, "create: {}", explain(&o));
    eprintln!(
        "create (2 swarm services, options): {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let service = p.service();
    assert_eq!(running_images(&swarm, &service), vec![v1_id.clone(); 2]);

    // The project's overlay network, created by gantry with the project's labels.
    let net_name = format!("{}_default", p.name);
    let net = inspect_json(
        &swarm,
        &["network", "inspect", "--format", "{{json .}}", &net_name],
    );
    assert_eq!(net["Driver"], "overlay", "{net}");
    assert_eq!(net["Scope"], "swarm");
    assert_eq!(net["Attachable"], true);
    assert_eq!(net["Labels"]["dev.gantry.project"], p.name.as_str());
    for label in guard.labels() {
        let (k, v) = label.split_once('=').unwrap();
        assert_eq!(net["Labels"][k], v, "network label {k}");
    }

    // What the manager holds, field by field.
    let spec = inspect_json(
        &swarm,
        &["service", "inspect", "--format", "{{json .Spec}}", &service],
    );
    let t = &spec["TaskTemplate"];
    let c = &t["ContainerSpec"];
    assert_eq!(c["User"], "1000:1000");
    assert_eq!(c["Dir"], "/data");
    assert_eq!(c["ReadOnly"], true);
    assert_eq!(c["Init"], true);
    assert_eq!(c["CapabilityDrop"], serde_json::json!(["ALL"]));
    assert!(c.get("CapabilityAdd").is_none(), "{c}");
    assert_eq!(c["Sysctls"]["net.core.somaxconn"], "1024");
    assert_eq!(
        c["Ulimits"],
        serde_json::json!([{"Name": "nofile", "Soft": 1000, "Hard": 2000}])
    );
    assert_eq!(c["Hosts"], serde_json::json!(["169.254.169.254 metadata"]));
    // Docker's own JSON says `Healthcheck` (bollard writes `HealthCheck`; Go reads either).
    assert_eq!(
        c["Healthcheck"]["Test"],
        serde_json::json!(["CMD", "/testapp", "--healthcheck"])
    );
    let mounts = c["Mounts"].as_array().expect("mounts");
    let volume = format!("{}_data", p.name);
    assert_eq!(mounts[0]["Type"], "volume");
    assert_eq!(mounts[0]["Source"], volume.as_str());
    assert_eq!(mounts[0]["Target"], "/data");
    assert_eq!(mounts[1]["Type"], "bind");
    assert_eq!(mounts[1]["ReadOnly"], true);
    assert_eq!(mounts[2]["Type"], "tmpfs");
    assert_eq!(mounts[2]["TmpfsOptions"]["SizeBytes"], 16 * 1024 * 1024);
    assert_eq!(mounts[2]["TmpfsOptions"]["Mode"], 0o1777);
    assert_eq!(mounts[3]["Target"], "/dev/shm");
    assert_eq!(mounts[3]["TmpfsOptions"]["SizeBytes"], 32 * 1024 * 1024);
    assert_eq!(
        t["RestartPolicy"]["Condition"], "on-failure",
        "{}",
        t["RestartPolicy"]
    );
    assert_eq!(t["RestartPolicy"]["MaxAttempts"], 5);
    // Swarm records the network by ID; the service's name is its alias there.
    assert_eq!(t["Networks"][0]["Target"], net["Id"]);
    assert_eq!(t["Networks"][0]["Aliases"], serde_json::json!(["web"]));
    let ports = &spec["EndpointSpec"]["Ports"];
    assert_eq!(ports[0]["Protocol"], "udp");
    assert_eq!(ports[0]["PublishedPort"], udp);
    assert_eq!(ports[0]["TargetPort"], 8125);
    assert_eq!(ports[0]["PublishMode"], "ingress");
    assert_eq!(ports[1]["Protocol"], "tcp");
    assert_eq!(ports[1]["PublishedPort"], tcp);

    // What the task containers run with: the engine applied the spec.
    let containers = task_containers(&swarm, &service);
    assert_eq!(containers.len(), 2, "{containers:?}");
    for id in &containers {
        let c = inspect_json(&swarm, &["inspect", "--format", "{{json .}}", id]);
        let hc = &c["HostConfig"];
        assert_eq!(c["Config"]["User"], "1000:1000");
        assert_eq!(c["Config"]["WorkingDir"], "/data");
        assert_eq!(hc["ReadonlyRootfs"], true);
        assert_eq!(hc["Init"], true);
        assert_eq!(hc["CapDrop"], serde_json::json!(["ALL"]));
        assert_eq!(hc["Sysctls"]["net.core.somaxconn"], "1024");
        assert_eq!(
            hc["ExtraHosts"],
            serde_json::json!(["metadata:169.254.169.254"])
        );
        assert_eq!(c["State"]["Health"]["Status"], "healthy", "{}", c["State"]);
        let on_net = &c["NetworkSettings"]["Networks"][&net_name];
        assert_eq!(on_net["NetworkID"], net["Id"], "attached to {net_name}");
        let mounted: Vec<&str> = c["Mounts"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| m["Name"].as_str())
            .collect();
        assert_eq!(mounted, [volume.as_str()], "the named volume");
    }
    // `web` resolves, on the project network, to the service's virtual IP there: asked of
    // Docker's embedded DNS from inside a task (its network namespace; the image has no
    // resolver of its own).
    let vips = inspect_json(
        &swarm,
        &[
            "service",
            "inspect",
            "--format",
            "{{json .Endpoint.VirtualIPs}}",
            &service,
        ],
    );
    let vip = vips
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["NetworkID"] == net["Id"])
        .and_then(|v| v["Addr"].as_str())
        .and_then(|a| a.split('/').next())
        .unwrap_or_else(|| panic!("a virtual IP on {net_name}: {vips}"))
        .to_string();
    let pid: u32 = swarm
        .docker_ok(&["inspect", "--format", "{{.State.Pid}}", &containers[0]])
        .trim()
        .parse()
        .unwrap();
    let answers = resolve_in_netns(pid, "web").expect("ask the embedded DNS");
    assert_eq!(
        answers,
        [vip.parse::<std::net::Ipv4Addr>().unwrap()],
        "web resolves to its VIP"
    );
    // Swarm created the volume on the node with gantry's labels.
    let vol = inspect_json(
        &swarm,
        &["volume", "inspect", "--format", "{{json .}}", &volume],
    );
    assert_eq!(vol["Labels"]["dev.gantry.project"], p.name.as_str());
    for label in guard.labels() {
        let (k, v) = label.split_once('=').unwrap();
        assert_eq!(vol["Labels"][k], v, "volume label {k}");
    }

    // The host network: no network of the project, no published port.
    let agent = format!("{}_agent", p.name);
    let spec = inspect_json(
        &swarm,
        &["service", "inspect", "--format", "{{json .Spec}}", &agent],
    );
    let attached = spec["TaskTemplate"]["Networks"]
        .as_array()
        .expect("networks");
    assert_eq!(attached.len(), 1, "the host network only: {attached:?}");
    assert!(
        spec.get("EndpointSpec")
            .is_none_or(|e| e.get("Ports").is_none()),
        "{spec}"
    );
    let agent_tasks = task_containers(&swarm, &agent);
    assert_eq!(agent_tasks.len(), 1);
    let mode = swarm.docker_ok(&[
        "inspect",
        "--format",
        "{{.HostConfig.NetworkMode}}",
        &agent_tasks[0],
    ]);
    assert_eq!(mode.trim(), "host");

    // A change of options: the plan names them, one Swarm update applies them.
    write("\"NET_BIND_SERVICE\"", "always");
    let o = p.gantry(&["plan", "--detailed-exitcode"]);
    assert_eq!(code(&o), 2, "{}", explain(&o));
    let plan = String::from_utf8_lossy(&o.stdout);
    for expected in [
        "restart",
        "cap_add",
        "NET_BIND_SERVICE",
        "swarm service update",
    ] {
        assert!(
            plan.contains(expected),
            "the plan shows {expected}:\n{plan}"
        );
    }
    let started = Instant::now();
    let o = p.gantry(&["apply", "--yes"]);
    assert_eq!(code(&o), 0, "update: {}", explain(&o));
    eprintln!(
        "options update (2 replicas, one Swarm update): {:.1}s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(update_state(&swarm, &service), "completed");
    let spec = inspect_json(
        &swarm,
        &["service", "inspect", "--format", "{{json .Spec}}", &service],
    );
    let t = &spec["TaskTemplate"];
    assert_eq!(t["RestartPolicy"]["Condition"], "any");
    assert!(
        t["RestartPolicy"].get("MaxAttempts").is_none_or(|m| m == 0),
        "{}",
        t["RestartPolicy"]
    );
    assert_eq!(
        t["ContainerSpec"]["CapabilityAdd"],
        serde_json::json!(["CAP_NET_BIND_SERVICE"])
    );

    // Destroy: the services go; the volume (data) and the network stay, labelled, for the
    // next deploy (the swarm engine is removed at the end of the tests, with them).
    p.write_toml(&format!(
        "[project]\nname = \"{}\"\n\n[[host]]\nname = \"manager\"\ndocker = \"{}\"\n",
        p.name, swarm.socket
    ));
    let o = p.gantry(&["apply", "--yes"]);
    assert_eq!(code(&o), 0, "destroy: {}", explain(&o));
    let said = explain(&o);
    assert!(
        said.contains(&format!("keeps the volume(s) {volume}")),
        "{said}"
    );
    for s in [&service, &agent] {
        assert!(
            !swarm.docker(&["service", "inspect", s]).status.success(),
            "{s} removed"
        );
    }
    assert!(
        swarm
            .docker(&["volume", "inspect", &volume])
            .status
            .success()
    );
    assert!(
        swarm
            .docker(&["network", "inspect", &net_name])
            .status
            .success()
    );
}

/// The A records of `name`, from Docker's embedded DNS server (127.0.0.11) as seen from the
/// network namespace of process `pid` (a task container's): this test binary, run there by
/// `nsenter`, asks it (see [`swarm_dns_query_helper`]); the image has no resolver of its own.
fn resolve_in_netns(pid: u32, name: &str) -> Result<Vec<std::net::Ipv4Addr>, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut cmd = std::process::Command::new("nsenter");
    cmd.args(["-t", &pid.to_string(), "-n", "--"])
        .arg(exe)
        .args([
            "swarm::swarm_dns_query_helper",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("GANTRY_DNS_QUERY", name);
    let o = crate::support::process::run_with_timeout(cmd, Duration::from_secs(30))?;
    let out = String::from_utf8_lossy(&o.stdout);
    let line = out
        .lines()
        .find_map(|l| l.split_once("GANTRY_DNS ").map(|(_, rest)| rest))
        .ok_or_else(|| {
            format!(
                "no answer from the helper: {out}{}",
                String::from_utf8_lossy(&o.stderr)
            )
        })?;
    match line.strip_prefix("answer") {
        Some(ips) => ips
            .split_whitespace()
            .map(|ip| ip.parse().map_err(|e| format!("{ip}: {e}")))
            .collect(),
        None => Err(line.to_string()),
    }
}

/// Not a test of its own: run by [`resolve_in_netns`] inside a task's network namespace,
/// with `GANTRY_DNS_QUERY=NAME`, it asks 127.0.0.11 for NAME's A records and prints
/// `GANTRY_DNS answer IP...` (or `GANTRY_DNS error ...`). Without the variable: nothing.
#[test]
fn swarm_dns_query_helper() {
    let Ok(name) = std::env::var("GANTRY_DNS_QUERY") else {
        return;
    };
    match dns_query(&name) {
        Ok(ips) => {
            let ips: Vec<String> = ips.iter().map(ToString::to_string).collect();
            println!("GANTRY_DNS answer {}", ips.join(" "));
        }
        Err(e) => println!("GANTRY_DNS error {e}"),
    }
}

/// One DNS query (type A) to 127.0.0.11:53, the A records of the answer.
fn dns_query(name: &str) -> Result<Vec<std::net::Ipv4Addr>, String> {
    let mut query = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        query.push(label.len() as u8);
        query.extend_from_slice(label.as_bytes());
    }
    query.extend_from_slice(&[0, 0, 1, 0, 1]); // root, type A, class IN
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    socket
        .set_read_timeout(Some(Duration::from_secs(3)))
        .map_err(|e| e.to_string())?;
    socket
        .send_to(&query, "127.0.0.11:53")
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 512];
    let n = socket
        .recv(&mut buf)
        .map_err(|e| format!("no answer: {e}"))?;
    let r = &buf[..n];
    if r.len() < 12 || r[3] & 0x0f != 0 {
        return Err(format!("DNS error answer: {r:?}"));
    }
    let answers = u16::from_be_bytes([r[6], r[7]]);
    // Skip the question (as sent), then read each answer: name (a pointer, or labels), type,
    // class, TTL, length, data.
    let mut i = query.len();
    let mut out = Vec::new();
    for _ in 0..answers {
        if r.get(i).is_some_and(|b| b & 0xc0 == 0xc0) {
            i += 2;
        } else {
            while r.get(i).is_some_and(|b| *b != 0) {
                i += 1 + r[i] as usize;
            }
            i += 1;
        }
        if i + 10 > r.len() {
            return Err(format!("a truncated answer: {r:?}"));
        }
        let field = |at: usize| u16::from_be_bytes([r[at], r[at + 1]]);
        let (typ, len) = (field(i), field(i + 8) as usize);
        i += 10;
        if typ == 1 && len == 4 && i + 4 <= r.len() {
            out.push(std::net::Ipv4Addr::new(r[i], r[i + 1], r[i + 2], r[i + 3]));
        }
        i += len;
    }
    Ok(out)
}

/// `gantry adopt --stack` (issue 16, seed 000's single-node Swarm): a stack deployed with
/// `docker stack deploy -c docker-compose.yaml NAME` is taken over as gantry's Swarm service
/// of the same name (`<project>_<service>` with the project named like the stack), with no
/// task restarted; the next apply updates that very service, and `gantry rollback` returns
/// it to the adopted image.
#[test]
fn a_stack_deployed_by_docker_stack_deploy_is_adopted_updated_and_rolled_back() {
    let Some(swarm) = swarm_engine::require_swarm_engine("adopt_stack") else {
        return;
    };
    let guard = DockerTestGuard::new();
    let [(v1, v1_id), (v2, v2_id)] = images(&swarm);
    let p = OnSwarm::new(&guard);
    let published = docker::free_port();
    let compose = p.dir.path().join("docker-compose.yaml");
    std::fs::write(
        &compose,
        format!(
            r#"version: "3.8"
services:
  web:
    image: gantry-testapp:{v1}
    environment:
      VERSION: "{v1}"
    ports:
      - "{published}:8080"
    deploy:
      replicas: 3
    healthcheck:
      test: ["CMD", "/testapp", "--healthcheck", "/healthz"]
      interval: 1s
      timeout: 2s
      retries: 2
"#
        ),
    )
    .unwrap();
    swarm.docker_ok(&[
        "stack",
        "deploy",
        "--resolve-image",
        "never",
        "-c",
        compose.to_str().unwrap(),
        &p.name,
    ]);
    let service = p.service();
    let deadline = Instant::now() + Duration::from_secs(120);
    while running_images(&swarm, &service).len() < 3 {
        assert!(
            Instant::now() < deadline,
            "the stack's 3 tasks did not start"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let id = swarm.docker_ok(&["service", "inspect", "--format", "{{.ID}}", &service]);
    let tasks_before = swarm.docker_ok(&["service", "ps", "-q", &service]);

    let members = p.dir.path().join("members.log");
    let lb = format!(
        r#"port = 8080
host_ports = {published}
lb = ["front"]

[lb.front]
kind = "command"
join = ["sh", "-c", "echo join {{address}}:{{port}} >> {log}"]
leave = ["sh", "-c", "echo leave {{address}}:{{port}} >> {log}"]
"#,
        log = members.display()
    );
    // First, a configuration whose service is not a Swarm service is refused, naming why.
    let q = OnSwarm::new(&guard);
    q.write_toml(&format!(
        "[project]\nname = \"{}\"\n\n[[host]]\nname = \"manager\"\ndocker = \"{}\"\n\n[service.web]\nimage = \"gantry-testapp:{v1}\"\nport = 8080\n",
        p.name, swarm.socket
    ));
    let o = q.gantry(&["adopt", "--stack", &p.name, "--yes"]);
    assert_eq!(code(&o), 1, "{}", explain(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("service.web is not a Swarm service"),
        "{}",
        explain(&o)
    );

    p.write(&swarm, &v1, "", &lb);
    let o = p.gantry(&["adopt", "--stack", &p.name, "--yes"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains(&format!("Swarm service {service} as revision 1")),
        "{out}"
    );
    let state = p.state();
    assert_eq!(state["swarm"]["web"]["id"], id.as_str());
    assert_eq!(state["swarm"]["web"]["image_id"], v1_id.as_str());
    assert_eq!(state["swarm"]["web"]["published_port"], published);
    assert_eq!(state["history"][0]["origin"], "adopt");
    assert_eq!(
        state["lbs"]["front"]["members"][0]["address"],
        format!("127.0.0.1:{published}")
    );
    // Nothing restarted; the configuration describes what runs.
    assert_eq!(
        swarm.docker_ok(&["service", "ps", "-q", &service]),
        tasks_before
    );
    let o = p.gantry(&["plan", "--detailed-exitcode"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));

    // The next release updates the stack's own service (same ID), then rollback returns.
    p.write(&swarm, &v2, "", &lb);
    let o = p.gantry(&["apply", "--yes"]);
    assert_eq!(code(&o), 0, "update: {}", explain(&o));
    assert_eq!(
        swarm.docker_ok(&["service", "inspect", "--format", "{{.ID}}", &service]),
        id
    );
    assert_eq!(running_images(&swarm, &service), vec![v2_id.clone(); 3]);
    let o = p.gantry(&["rollback", "--yes"]);
    assert_eq!(code(&o), 0, "rollback: {}", explain(&o));
    assert_eq!(running_images(&swarm, &service), vec![v1_id.clone(); 3]);
    assert_eq!(
        p.state()["history"][2]["origin"],
        "rollback to revision 1 (from 2)"
    );
}

/// A Swarm manager reached over SSH (`docker = "ssh://..."`, issue 14 item 1: "Swarm
/// included"): a real sshd in front of the swarm engine, whose socket the far side names in
/// its `DOCKER_HOST` (sshd's `SetEnv`), which gantry honours as `docker -H ssh://` does. A
/// service is created and updated through the forwarded socket; the manager reports every
/// task on the new image, and no ssh process is left.
#[test]
fn a_swarm_service_is_deployed_and_updated_through_an_ssh_manager() {
    use crate::support::sshd::{Sshd, require_sshd};
    let Some(swarm) = swarm_engine::require_swarm_engine("swarm_over_ssh") else {
        return;
    };
    if !require_sshd("swarm_over_ssh") {
        return;
    }
    let guard = DockerTestGuard::new();
    let [(v1, v1_id), (v2, v2_id)] = images(&swarm);
    let sshd = Sshd::start(&[&format!("SetEnv DOCKER_HOST={}", swarm.socket)]);
    let p = OnSwarm::new(&guard);
    let write = |tag: &str| {
        p.write_toml(&format!(
            r#"[project]
name = "{name}"

[[host]]
name = "manager"
docker = "ssh://{alias}"

[service.web]
runtime = "swarm"
image = "gantry-testapp:{tag}"
replicas = 2
env = {{ VERSION = "{tag}" }}
stop_grace_period = "2s"
health = {{ command = ["/testapp", "--healthcheck", "/healthz"], interval = "1s", timeout = "2s", retries = 2 }}
rollout = {{ batch = 2, order = "start-first" }}
"#,
            name = p.name,
            alias = sshd.alias,
        ))
    };
    let gantry = |args: &[&str]| {
        let mut c = p.command(args);
        c.env("PATH", sshd.path_env());
        crate::support::project::run(c)
    };
    let service = p.service();
    write(&v1);
    let started = Instant::now();
    let o = gantry(&["apply", "--yes"]);
    assert_eq!(code(&o), 0, "create: {}\nsshd: {}", explain(&o), sshd.log());
    eprintln!(
        "create over ssh (2 replicas): {:.1}s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(running_images(&swarm, &service), vec![v1_id.clone(); 2]);

    write(&v2);
    let started = Instant::now();
    let o = gantry(&["apply", "--yes"]);
    assert_eq!(code(&o), 0, "update: {}", explain(&o));
    eprintln!(
        "update over ssh (2 replicas, one batch): {:.1}s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(update_state(&swarm, &service), "completed");
    assert_eq!(running_images(&swarm, &service), vec![v2_id.clone(); 2]);
    assert_eq!(p.state()["swarm"]["web"]["image_id"], v2_id.as_str());
    let o = gantry(&["plan", "--refresh", "--detailed-exitcode"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let leftover = sshd.leftover_ssh();
    assert!(leftover.is_empty(), "ssh left running: {leftover:?}");
}
