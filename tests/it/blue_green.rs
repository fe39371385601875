//! Blue-green releases against the real engine and real load balancers: `front` (the users'
//! address: nginx, or HAProxy through its runtime API) and `preview` (an nginx: the new
//! colour's address before the switch). Skipped (with a message) without Docker, nginx or
//! HAProxy locally; fails under CI.

use std::ops::Deref;
use std::process::Output;
use std::time::{Duration, Instant};

use crate::support;
use crate::support::docker::{self, DockerTestGuard};
use crate::support::haproxy::{HaproxyUnderTest, require_haproxy};
use crate::support::nginx::{NginxUnderTest, require_nginx};
use crate::support::project::{Project, code, explain};

/// A project behind two nginx (the users' `front` and the `preview`), or HAProxy in front.
struct BlueGreen {
    front: NginxUnderTest,
    preview: NginxUnderTest,
    /// When set, the users' load balancer is this HAProxy instead of the `front` nginx.
    haproxy: Option<HaproxyUnderTest>,
    /// Last: its directory, where the load balancers run, goes after they stop.
    p: Project,
}

impl Deref for BlueGreen {
    type Target = Project;
    fn deref(&self) -> &Project {
        &self.p
    }
}

impl BlueGreen {
    fn new(guard: &DockerTestGuard, label: &str) -> BlueGreen {
        let p = Project::new(label, guard);
        BlueGreen {
            front: NginxUnderTest::start(&p.join("front"), "web_front"),
            preview: NginxUnderTest::start(&p.join("preview"), "web_preview"),
            haproxy: None,
            p,
        }
    }

    /// The same with HAProxy as the users' load balancer.
    fn with_haproxy(guard: &DockerTestGuard, label: &str) -> BlueGreen {
        let mut p = BlueGreen::new(guard, label);
        p.haproxy = Some(HaproxyUnderTest::start(&p.join("haproxy"), "web_front"));
        p
    }

    /// The users' address.
    fn front_addr(&self) -> String {
        match &self.haproxy {
            Some(h) => h.addr(),
            None => self.front.addr(),
        }
    }

    /// 4 replicas of `tag`, blue-green; `check` is the preview check (a TOML array).
    fn write(&self, tag: &str, check: &str, scale_down_delay: &str, keep_old: u32) {
        let lb = |name: &str, n: &NginxUnderTest, upstream: &str| {
            let (check, reload) = n.toml_commands();
            format!(
                "[lb.{name}]\nkind = \"nginx\"\nupstream = \"{upstream}\"\nupstream_file = \"{}\"\ncheck = {check}\nreload = {reload}\n",
                n.upstream_file.display()
            )
        };
        self.write_toml(&format!(
            r#"[project]
name = "{name}"

{front}
{preview}
[service.web]
image = "gantry-testapp:{tag}"
replicas = 4
port = 8080
env = {{ VERSION = "{tag}" }}
labels = {labels}
stop_grace_period = "2s"
lb = ["front"]
health = {{ http = "/healthz", interval = "100ms", timeout = "1s", retries = 20 }}

[service.web.rollout]
strategy = "blue-green"
drain = "1s"
preview_lb = "preview"
preview_check = {check}
scale_down_delay = "{scale_down_delay}"
keep_old_replicas = {keep_old}
"#,
            name = self.name,
            labels = self.labels,
            front = match &self.haproxy {
                Some(h) => format!(
                    "[lb.front]\nkind = \"haproxy\"\nsocket = \"{}\"\nbackend = \"web_front\"\n",
                    h.socket.display()
                ),
                None => lb("front", &self.front, "web_front"),
            },
            preview = lb("preview", &self.preview, "web_preview"),
        ));
    }

    /// A preview check that asks the preview address for `tag`.
    fn check_for(&self, tag: &str) -> String {
        format!(
            r#"["sh", "-c", "curl -fsS http://{}/version | grep -qx {tag}"]"#,
            self.preview.addr()
        )
    }

    /// `(name, running)` of every container of the project, sorted.
    fn containers(&self) -> Vec<(String, bool)> {
        let mut v: Vec<(String, bool)> = self
            .p
            .containers(&[], "{{.Names}} {{.State}}")
            .iter()
            .map(|l| {
                let (n, s) = l.split_once(' ').unwrap();
                (n.to_string(), s == "running")
            })
            .collect();
        v.sort();
        v
    }

    fn running(&self, revision: u64) -> usize {
        let prefix = format!("{}-web-{revision}-", self.name);
        self.containers()
            .iter()
            .filter(|(n, up)| *up && n.starts_with(&prefix))
            .count()
    }

    /// What `lb` serves once nginx's reload has taken effect (it is asynchronous: old
    /// workers answer for a moment); what it serves after 5 s otherwise.
    fn version_is(&self, addr: &str, tag: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let v = self.version(addr);
            if v == tag || Instant::now() > deadline {
                return v;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn version(&self, addr: &str) -> String {
        support::http::get(addr, "/version")
            .map(|r| r.text().trim().to_string())
            .unwrap_or_default()
    }

    fn upstream(&self, lb: &NginxUnderTest) -> String {
        std::fs::read_to_string(&lb.upstream_file).unwrap()
    }
}

/// Seconds the `switch lb.front` step took, from `--progress plain`.
fn switch_seconds(o: &Output) -> f64 {
    let err = String::from_utf8_lossy(&o.stderr);
    let line = err
        .lines()
        .find(|l| l.contains("switch lb.front") && l.contains(" done in "))
        .unwrap_or_else(|| panic!("no switch step\n{}", explain(o)));
    let after = line.split(" done in ").nth(1).unwrap();
    after.split('s').next().unwrap().parse().unwrap()
}

fn images(tags: &[&str]) -> Vec<String> {
    let tags: Vec<String> = tags.iter().map(|t| docker::run_tag(t)).collect();
    let refs: Vec<&str> = tags.iter().map(String::as_str).collect();
    docker::build_testapp_images_once(&refs);
    tags
}

#[test]
fn blue_green_under_load_loses_no_request_and_switches_back_in_one_change() {
    if !docker::require_docker("blue_green_under_load") || !require_nginx("blue_green_under_load") {
        return;
    }
    let guard = DockerTestGuard::new();
    release_and_switch_back_under_load("nginx", &BlueGreen::new(&guard, "bg"), ["bg1", "bg2"]);
}

#[test]
fn blue_green_behind_haproxy_loses_no_request_and_switches_back_in_one_change() {
    if !docker::require_docker("blue_green_haproxy")
        || !require_nginx("blue_green_haproxy")
        || !require_haproxy("blue_green_haproxy")
    {
        return;
    }
    let guard = DockerTestGuard::new();
    let p = BlueGreen::with_haproxy(&guard, "bh");
    release_and_switch_back_under_load("HAProxy", &p, ["bh1", "bh2"]);
}

/// A blue-green release and a switch-back under 500 requests/s through the users' load
/// balancer: no failed request, each switch under 1 s of LB time, the switch-back without
/// any container started.
fn release_and_switch_back_under_load(lb: &str, p: &BlueGreen, tags: [&str; 2]) {
    let tags = images(&tags);
    p.write(&tags[0], &p.check_for(&tags[0]), "10m", 0);
    let o = p.gantry(&["apply", "--yes"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    assert_eq!(p.version_is(&p.front_addr(), &tags[0]), tags[0]);

    // The plan names the colours, the preview and the switch.
    p.write(&tags[1], &p.check_for(&tags[1]), "10m", 0);
    let plan = String::from_utf8_lossy(&p.gantry(&["plan"]).stdout).to_string();
    for expected in [
        "#1,#2,#3,#4 (new) join lb.preview",
        "preview check",
        "switch lb.front from the live colour to #1,#2,#3,#4 in one change",
        "keep the old colour 10m for switch-back",
    ] {
        assert!(plan.contains(expected), "{expected}\n{plan}");
    }

    let containers_before_switch_back = std::cell::RefCell::new(Vec::new());
    support::load::rounds_lose_no_request(
        &format!("{lb}, blue-green"),
        &p.front_addr(),
        &[tags[0].clone(), tags[1].clone()],
        if lb == "HAProxy" {
            support::load::KeepAlive::MustNotFail
        } else {
            support::load::KeepAlive::Reported
        },
        Duration::from_millis(1500),
        |rollout, tag| {
            if rollout {
                p.write(tag, &p.check_for(tag), "10m", 0);
                p.gantry(&["apply", "--yes", "--progress", "plain"])
            } else {
                *containers_before_switch_back.borrow_mut() = p.containers();
                p.gantry(&["rollback", "--yes", "--progress", "plain"])
            }
        },
        || p.version(&p.front_addr()),
        |o| {
            let seconds = switch_seconds(o);
            assert!(seconds < 1.0, "the switch took {seconds}s of LB time");
            let err = String::from_utf8_lossy(&o.stderr);
            if err.contains("take over running") {
                // The switch-back: no container was created or started (retention may
                // have removed old stopped ones).
                let before = containers_before_switch_back.borrow();
                for (name, running) in p.containers() {
                    let was = before.iter().find(|(n, _)| *n == name);
                    assert!(was.is_some(), "{name} was created\n{}", explain(o));
                    assert!(
                        !running || was.is_some_and(|(_, r)| *r),
                        "{name} was started\n{}",
                        explain(o)
                    );
                }
                assert!(!err.contains("start #"), "{}", explain(o));
            }
        },
    );
}

#[test]
fn a_failing_preview_check_stops_the_release_before_any_user_traffic_moves() {
    if !docker::require_docker("failing_preview_check") || !require_nginx("failing_preview_check") {
        return;
    }
    let guard = DockerTestGuard::new();
    let tags = images(&["pc1", "pc2"]);
    let p = BlueGreen::new(&guard, "pc");
    p.write(&tags[0], &p.check_for(&tags[0]), "0s", 0);
    assert_eq!(code(&p.gantry(&["apply", "--yes"])), 0);
    let front_before = p.upstream(&p.front);

    // The check expects a version the new colour does not serve.
    p.write(&tags[1], &p.check_for("something-else"), "0s", 0);
    let o = p.gantry(&["apply", "--yes", "--progress", "plain"]);
    assert_eq!(code(&o), 3, "{}", explain(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("the preview check failed"), "{err}");
    assert!(
        !err.contains("switch lb.front"),
        "no switch was attempted\n{err}"
    );
    assert_eq!(
        p.upstream(&p.front),
        front_before,
        "users' LB never changed"
    );
    assert_eq!(p.version_is(&p.front_addr(), &tags[0]), tags[0]);
    assert_eq!(p.running(1), 4, "{:?}", p.containers());
    assert_eq!(
        p.running(2),
        0,
        "the new colour is gone: {:?}",
        p.containers()
    );
}

#[test]
fn hold_at_preview_then_promote_and_the_old_colour_is_scaled_down_on_schedule() {
    if !docker::require_docker("hold_and_promote") || !require_nginx("hold_and_promote") {
        return;
    }
    let guard = DockerTestGuard::new();
    let tags = images(&["hp1", "hp2", "hp3"]);
    let p = BlueGreen::new(&guard, "hp");
    p.write(&tags[0], &p.check_for(&tags[0]), "3s", 1);
    assert_eq!(code(&p.gantry(&["apply", "--yes"])), 0);

    // Held at the preview: the new colour answers on the preview address only.
    p.write(&tags[1], &p.check_for(&tags[1]), "3s", 1);
    let o = p.gantry(&["apply", "--yes", "--hold-at-preview"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("Held at the preview"));
    assert_eq!(p.version_is(&p.front_addr(), &tags[0]), tags[0]);
    assert_eq!(p.version_is(&p.preview.addr(), &tags[1]), tags[1]);
    let o = p.gantry(&["apply", "--yes"]);
    assert_eq!(code(&o), 1, "apply refuses while a release is held");
    assert!(String::from_utf8_lossy(&o.stderr).contains("gantry promote"));
    let status = String::from_utf8_lossy(&p.gantry(&["status"]).stdout).to_string();
    assert!(status.contains("held at its preview"), "{status}");

    let o = p.gantry(&["promote", "--yes", "--progress", "plain"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    assert_eq!(p.version_is(&p.front_addr(), &tags[1]), tags[1]);
    assert!(switch_seconds(&o) < 1.0);
    // The old colour runs on for the 3 s `scale_down_delay`, then keeps 1 replica running.
    assert_eq!(p.running(1), 4, "{:?}", p.containers());
    let switched = Instant::now();
    while p.running(1) > 1 {
        assert!(
            switched.elapsed() < Duration::from_secs(30),
            "not scaled down on schedule: {:?}\n{}",
            p.containers(),
            std::fs::read_to_string(p.dir.path().join(".gantry/scale-down.log"))
                .unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let after = switched.elapsed();
    assert!(
        after >= Duration::from_secs(2),
        "scaled down after {after:?}, before the 3 s delay"
    );
    eprintln!("old colour scaled down {after:?} after the switch (delay 3 s)");

    // --prepare: the next colour starts and warms up before the window; promote runs the
    // preview check and the switch.
    p.write(&tags[2], &p.check_for(&tags[2]), "3s", 1);
    let o = p.gantry(&["apply", "--yes", "--prepare", "--progress", "plain"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    assert!(!String::from_utf8_lossy(&o.stderr).contains("preview check"));
    assert_eq!(p.version_is(&p.front_addr(), &tags[1]), tags[1]);
    let o = p.gantry(&["promote", "--yes", "--progress", "plain"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("preview check"));
    assert_eq!(p.version_is(&p.front_addr(), &tags[2]), tags[2]);

    // A held release abandoned by rollback: the new colour goes, users never saw it.
    p.write(&tags[0], &p.check_for(&tags[0]), "3s", 1);
    assert_eq!(code(&p.gantry(&["apply", "--yes", "--prepare"])), 0);
    let o = p.gantry(&["rollback", "--yes", "--progress", "plain"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    assert_eq!(p.version_is(&p.front_addr(), &tags[2]), tags[2]);
    let history = String::from_utf8_lossy(&p.gantry(&["history"]).stdout).to_string();
    assert!(history.contains("held and abandoned"), "{history}");
    assert_eq!(
        p.running(4),
        0,
        "the abandoned colour is gone: {:?}",
        p.containers()
    );
}
