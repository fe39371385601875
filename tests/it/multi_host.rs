//! Rollouts across two real Docker engines on this machine (issue 6, "Several hosts"): host
//! `a` is the main engine on its unix socket, host `b` a second `dockerd` of its own (see
//! `support::second_engine`) reached over TCP with TLS and client certificates. One nginx
//! in front of both holds the replicas of both hosts in one upstream.
//!
//! What is pinned down: a rollout covers both engines, host after host, in the order the plan
//! shows; a failure on host `b` after host `a` is done restores both (`on_failure =
//! "rollback"`, exit 3) or leaves each where it stopped (`"pause"`, exit 4, `gantry status`
//! shows both); an image missing on one host is refused before anything changes; and gantry
//! really speaks verified TLS to host `b`.

use std::collections::BTreeSet;
use std::ops::Deref;
use std::process::Output;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support;
use crate::support::docker::{self, DockerTestGuard};
use crate::support::nginx::{NginxUnderTest, require_nginx};
use crate::support::project::{GANTRY_TIMEOUT, Project, explain};
use crate::support::second_engine::{SecondEngine, require_second_engine};

/// One engine, as the test's own `docker` CLI reaches it.
#[derive(Clone, Copy)]
enum Engine<'a> {
    Main,
    Second(&'a SecondEngine),
}

impl Engine<'_> {
    fn docker_ok(&self, args: &[&str]) -> String {
        match self {
            Engine::Main => docker::docker_ok(args),
            Engine::Second(b) => b.docker_ok(args),
        }
    }
}

/// A running replica, as its engine reports it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Replica {
    name: String,
    /// The `dev.gantry.host` label gantry put on it.
    host: String,
    image_id: String,
    port: u16,
}

/// A project on hosts `a` and `b` behind one nginx.
struct TwoHosts {
    nginx: NginxUnderTest,
    b: Arc<SecondEngine>,
    /// `gantry-testapp:<run>-<test>-v1`, `...-v2`.
    v1: String,
    v2: String,
    /// Host `a` over SSH (`ssh://` through this sshd, in front of the main engine) instead
    /// of its unix socket.
    ssh: Option<crate::support::sshd::Sshd>,
    /// Last: its directory, where nginx runs, goes after nginx stops.
    p: Project,
}

impl Deref for TwoHosts {
    type Target = Project;
    fn deref(&self) -> &Project {
        &self.p
    }
}

impl TwoHosts {
    /// Builds v1 and v2 (tags of this test only: a test that removes an image from host `b`
    /// touches no other test's), loads v1 into host `b`, and v2 too when `v2_on_b`.
    fn new(test: &str, guard: &DockerTestGuard, b: Arc<SecondEngine>, v2_on_b: bool) -> TwoHosts {
        let tags = [
            docker::run_tag(&format!("{test}-v1")),
            docker::run_tag(&format!("{test}-v2")),
        ];
        let images = docker::build_testapp_images_once(&[&tags[0], &tags[1]]);
        let [v1, v2] = [images[0].clone(), images[1].clone()];
        b.load_images(&[&v1]);
        if v2_on_b {
            b.load_images(&[&v2]);
        }
        let p = Project::new("mh", guard);
        TwoHosts {
            nginx: NginxUnderTest::start(&p.join("nginx"), "app"),
            b,
            v1,
            v2,
            ssh: None,
            p,
        }
    }

    /// Host `a` reached over SSH from now on.
    fn over_ssh(mut self) -> TwoHosts {
        self.ssh = Some(crate::support::sshd::Sshd::start(&[]));
        self
    }

    /// `gantry ARGS` here, with the sshd's client side when host `a` is over SSH.
    fn gantry(&self, args: &[&str]) -> Output {
        support::project::run(self.command(args))
    }

    fn command(&self, args: &[&str]) -> std::process::Command {
        let mut c = self.p.command(args);
        if let Some(sshd) = &self.ssh {
            c.env("PATH", sshd.path_env());
        }
        c
    }

    /// Two replicas on each host, start-first one at a time, all in one nginx upstream.
    /// `host_b` replaces the `[[host]]` table of `b` (for the TLS refusals).
    fn write(&self, image: &str, on_failure: &str, soak: &str, host_b: Option<&str>) {
        let (check, reload) = self.nginx.toml_commands();
        let front = format!(
            "[lb.front]\nkind = \"nginx\"\nupstream = \"app\"\nupstream_file = \"{}\"\ncheck = {check}\nreload = {reload}\n",
            self.nginx.upstream_file.display()
        );
        self.write_config(
            image,
            host_b,
            r#"["front"]"#,
            &format!(
                r#"{{ batch = 1, order = "start-first", drain = "200ms", soak = "{soak}", on_failure = "{on_failure}" }}"#
            ),
            &front,
        );
    }

    /// Hosts `a` and `b`, service `web` (2 replicas per host) in load balancers `lb_list`
    /// with `rollout`, then the `lbs` tables.
    fn write_config(
        &self,
        image: &str,
        host_b: Option<&str>,
        lb_list: &str,
        rollout: &str,
        lbs: &str,
    ) {
        let version = if image == self.v1 { "v1" } else { "v2" };
        self.write_toml(&format!(
            r#"[project]
name = "{name}"

[[host]]
name = "a"
docker = "{main}"
address = "127.0.0.1"

{host_b}
[service.web]
image = "{image}"
replicas = 2
port = 8080
env = {{ VERSION = "{version}" }}
labels = {labels}
stop_grace_period = "5s"
lb = {lb_list}
health = {{ http = "/healthz", interval = "100ms", timeout = "1s", retries = 30 }}
rollout = {rollout}

{lbs}"#,
            name = self.name,
            main = self
                .ssh
                .as_ref()
                .map_or_else(main_endpoint, |s| format!("ssh://{}", s.alias)),
            host_b = host_b.map_or_else(|| self.b.host_toml("b"), str::to_string),
            labels = self.labels,
        ));
    }

    fn apply(&self) -> Output {
        self.gantry(&["apply", "--yes", "--progress", "plain"])
    }

    /// `gantry apply` of a v2 that host `b` loses while host `a` rolls: once the second
    /// replica of revision 2 exists on `a` (so `b` has not begun, and `soak` keeps it so for
    /// a while), v2 is removed from `b`, as an image pruner on that host would. Pre-flight
    /// has seen it there; `b`'s first start then fails with "no such image".
    fn apply_losing_v2_on_b(&self) -> Output {
        let mut apply = self.command(&["apply", "--yes", "--progress", "plain"]);
        apply
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let child = support::process::Background::spawn(apply, "gantry apply");
        let second_on_a = format!("name={}-web-2-2", self.name);
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let found = docker::docker_ok(&["ps", "-aq", "--filter", &second_on_a]);
            if !found.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "host a never started replica #2 of v2"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            self.replicas(Engine::Second(&self.b), true)
                .iter()
                .all(|r| !r.name.contains("-web-2-")),
            "host b began before host a was done"
        );
        self.b.docker_ok(&["rmi", "-f", &self.v2]);
        child.wait(GANTRY_TIMEOUT)
    }

    /// This project's containers on one engine (`running` only, or all), sorted by name.
    fn replicas(&self, engine: Engine, running: bool) -> Vec<Replica> {
        let filter = support::project::label_filter(&self.name);
        let mut ps = vec!["ps", "-q", "--filter", &filter];
        if !running {
            ps.push("-a");
        }
        let ids = engine.docker_ok(&ps);
        if ids.is_empty() {
            return Vec::new();
        }
        let format = "{{.Name}}|{{index .Config.Labels \"dev.gantry.host\"}}|{{.Image}}|\
                      {{range $p, $b := .NetworkSettings.Ports}}{{range $b}}{{.HostPort}}{{end}}{{end}}";
        let mut args = vec!["inspect", "--format", format];
        args.extend(ids.split_whitespace());
        let mut out: Vec<Replica> = engine
            .docker_ok(&args)
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split('|').collect();
                Replica {
                    name: f[0].trim_start_matches('/').to_string(),
                    host: f[1].to_string(),
                    image_id: f[2].to_string(),
                    port: f[3].parse().unwrap_or(0),
                }
            })
            .collect();
        out.sort();
        out
    }

    fn image_id(&self, image: &str) -> String {
        docker::docker_ok(&["image", "inspect", "--format", "{{.Id}}", image])
    }

    /// The ports nginx's upstream lists (`server 127.0.0.1:PORT`).
    fn upstream_ports(&self) -> BTreeSet<u16> {
        std::fs::read_to_string(&self.nginx.upstream_file)
            .unwrap()
            .lines()
            .filter_map(|l| l.trim().strip_prefix("server 127.0.0.1:"))
            .filter_map(|l| l.split([';', ' ']).next()?.parse().ok())
            .collect()
    }

    /// Asserts: `n` replicas of `image` run on each engine, labelled with their host, each
    /// answers its `/version` itself, and nginx lists exactly the running replicas of both.
    /// Returns all of them.
    fn assert_running(&self, a: (&str, usize), b: (&str, usize)) -> Vec<Replica> {
        let mut all = Vec::new();
        for (engine, host, (image, n)) in
            [(Engine::Main, "a", a), (Engine::Second(&self.b), "b", b)]
        {
            let running = self.replicas(engine, true);
            assert_eq!(running.len(), n, "running on host {host}: {running:#?}");
            let want = self.image_id(image);
            let version = if image == self.v1 { "v1" } else { "v2" };
            for r in &running {
                assert_eq!(r.host, host, "{r:?}");
                assert_eq!(r.image_id, want, "{r:?} runs another image than {image}");
                let answer = support::http::get(&format!("127.0.0.1:{}", r.port), "/version")
                    .unwrap_or_else(|e| panic!("{r:?} does not answer: {e}"));
                assert_eq!(answer.text().trim(), version, "{r:?}");
            }
            all.extend(running);
        }
        let ports: BTreeSet<u16> = all.iter().map(|r| r.port).collect();
        assert_eq!(
            self.upstream_ports(),
            ports,
            "nginx's upstream is the running replicas of both hosts:\n{}",
            std::fs::read_to_string(&self.nginx.upstream_file).unwrap()
        );
        all
    }
}

/// The main engine's endpoint, as the `docker` CLI of the tests reaches it.
fn main_endpoint() -> String {
    std::env::var("DOCKER_HOST")
        .ok()
        .filter(|h| h.starts_with("unix://"))
        .unwrap_or_else(|| "unix:///var/run/docker.sock".into())
}

/// The hosts in the order `text`'s lines name them (`host a:` ...), repeats collapsed.
fn host_order(text: &str) -> Vec<String> {
    let mut order: Vec<String> = Vec::new();
    for line in text.lines() {
        let Some((_, rest)) = line.split_once("host ") else {
            continue;
        };
        let Some(host) = rest.split([':', ' ', ',']).next() else {
            continue;
        };
        if !matches!(host, "a" | "b") {
            continue;
        }
        if order.last().map(String::as_str) != Some(host) {
            order.push(host.to_string());
        }
    }
    order
}

/// The progress lines of `stderr` up to the failure (what the restore does comes after).
fn progress_before_failure(stderr: &str) -> String {
    stderr
        .lines()
        .take_while(|l| !l.contains("FAILED") && !l.contains("failed") && !l.contains("restoring"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The hostnames (short container IDs) of the replicas that answer through nginx, polled
/// until `want` have all answered (nginx reloads asynchronously: for a moment the old
/// workers still know the old members) or 10 s have passed.
fn hostnames_behind_nginx(addr: &str, want: &BTreeSet<String>) -> BTreeSet<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = BTreeSet::new();
    while !want.is_subset(&seen) && Instant::now() < deadline {
        if let Ok(r) = support::http::get(addr, "/") {
            let body = r.text();
            let host = body.split("\"host\":\"").nth(1).unwrap_or_default();
            seen.insert(host.split('"').next().unwrap_or_default().to_string());
        }
    }
    seen
}

fn short_ids(engine: Engine, names: &[&str]) -> BTreeSet<String> {
    names
        .iter()
        .map(|n| engine.docker_ok(&["inspect", "--format", "{{.Id}}", n])[..12].to_string())
        .collect()
}

fn setup(test: &str) -> Option<(DockerTestGuard, Arc<SecondEngine>)> {
    if !docker::require_docker(test) || !require_nginx(test) {
        return None;
    }
    let b = require_second_engine(test)?;
    Some((DockerTestGuard::new(), b))
}

#[test]
fn a_rollout_covers_both_engines_host_after_host_behind_one_nginx() {
    let Some((guard, b)) = setup("a_rollout_covers_both_engines") else {
        return;
    };
    covers_both(TwoHosts::new("both", &guard, b, true));
}

/// The same with host `a` over SSH (issue 14: the multi-host tests with one host over SSH).
#[test]
fn a_rollout_covers_both_engines_with_host_a_over_ssh() {
    if !crate::support::sshd::require_sshd("covers_both_over_ssh") {
        return;
    }
    let Some((guard, b)) = setup("covers_both_over_ssh") else {
        return;
    };
    covers_both(TwoHosts::new("bothssh", &guard, b, true).over_ssh());
}

fn covers_both(p: TwoHosts) {
    p.write(&p.v1, "rollback", "0s", None);
    let o = p.apply();
    assert_eq!(o.status.code(), Some(0), "{}", explain(&o));
    let v1 = p.assert_running((&p.v1, 2), (&p.v1, 2));

    // One nginx, members on both engines: requests reach the containers of both.
    let names = |host: &str| {
        v1.iter()
            .filter(|r| r.host == host)
            .map(|r| r.name.clone())
            .collect::<Vec<_>>()
    };
    let (on_a, on_b) = (names("a"), names("b"));
    let a_ids = short_ids(
        Engine::Main,
        &on_a.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let b_ids = short_ids(
        Engine::Second(&p.b),
        &on_b.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let all: BTreeSet<String> = a_ids.union(&b_ids).cloned().collect();
    let seen = hostnames_behind_nginx(&p.nginx.addr(), &all);
    assert!(
        all.is_subset(&seen),
        "nginx reached {seen:?}; host a runs {a_ids:?}, host b {b_ids:?}"
    );

    // v2: the plan and the progress both go host a, then host b.
    p.write(&p.v2, "rollback", "0s", None);
    let plan = p.gantry(&["plan"]);
    let plan_text = String::from_utf8_lossy(&plan.stdout).to_string();
    assert_eq!(host_order(&plan_text), ["a", "b"], "{plan_text}");
    let o = p.apply();
    assert_eq!(o.status.code(), Some(0), "{}", explain(&o));
    assert_eq!(
        host_order(&String::from_utf8_lossy(&o.stderr)),
        ["a", "b"],
        "{}",
        explain(&o)
    );
    p.assert_running((&p.v2, 2), (&p.v2, 2));

    let status = p.gantry(&["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert_eq!(status.status.code(), Some(0), "{}", explain(&status));
    assert!(
        text.contains("┆ a ") && text.contains("┆ b "),
        "status shows both hosts:\n{text}"
    );
}

#[test]
fn a_failure_on_host_b_restores_host_a_too() {
    let Some((guard, b)) = setup("a_failure_on_host_b_restores_host_a_too") else {
        return;
    };
    restores_both(TwoHosts::new("rollback", &guard, b, true));
}

/// The same with host `a` over SSH: the restore of `a` goes through ssh too.
#[test]
fn a_failure_on_host_b_restores_host_a_over_ssh_too() {
    if !crate::support::sshd::require_sshd("restores_over_ssh") {
        return;
    }
    let Some((guard, b)) = setup("restores_over_ssh") else {
        return;
    };
    restores_both(TwoHosts::new("rbssh", &guard, b, true).over_ssh());
}

fn restores_both(p: TwoHosts) {
    p.write(&p.v1, "rollback", "0s", None);
    let o = p.apply();
    assert_eq!(o.status.code(), Some(0), "{}", explain(&o));
    let before = p.assert_running((&p.v1, 2), (&p.v1, 2));

    p.write(&p.v2, "rollback", "3s", None);
    let plan = p.gantry(&["plan"]);
    let plan_text = String::from_utf8_lossy(&plan.stdout).to_string();
    assert_eq!(host_order(&plan_text), ["a", "b"], "{plan_text}");

    let o = p.apply_losing_v2_on_b();
    assert_eq!(o.status.code(), Some(3), "{}", explain(&o));
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(
        host_order(&progress_before_failure(&stderr)),
        ["a", "b"],
        "host a is rolled before host b:\n{stderr}"
    );
    assert!(
        stderr.contains("previous revision was restored"),
        "{}",
        explain(&o)
    );

    // Both hosts on v1 again, host a (which had finished) included, nginx back on them.
    let after = p.assert_running((&p.v1, 2), (&p.v1, 2));
    let names = |r: &[Replica]| r.iter().map(|r| r.name.clone()).collect::<Vec<_>>();
    assert_eq!(
        names(&after),
        names(&before),
        "the v1 containers themselves came back"
    );
    assert!(
        p.replicas(Engine::Main, false)
            .iter()
            .all(|r| !r.name.contains("-web-2-")),
        "no container of the failed revision is left on host a"
    );
}

#[test]
fn a_failure_on_host_b_with_pause_leaves_each_host_where_it_stopped() {
    let Some((guard, b)) = setup("a_failure_on_host_b_with_pause") else {
        return;
    };
    let p = TwoHosts::new("pause", &guard, b, true);
    p.write(&p.v1, "pause", "0s", None);
    let o = p.apply();
    assert_eq!(o.status.code(), Some(0), "{}", explain(&o));
    p.assert_running((&p.v1, 2), (&p.v1, 2));

    p.write(&p.v2, "pause", "3s", None);
    let o = p.apply_losing_v2_on_b();
    assert_eq!(o.status.code(), Some(4), "{}", explain(&o));
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(
        host_order(&progress_before_failure(&stderr)),
        ["a", "b"],
        "{stderr}"
    );
    assert!(stderr.contains("was NOT restored"), "{}", explain(&o));

    // Host a finished its part: v2. Host b failed at its first start: v1, as it was.
    p.assert_running((&p.v2, 2), (&p.v1, 2));

    let status = p.gantry(&["status"]);
    let text = String::from_utf8_lossy(&status.stdout).to_string();
    let rows = |host: &str| {
        text.lines()
            .filter(|l| l.contains(&format!("┆ {host} ")) && l.contains("running"))
            .count()
    };
    assert!(
        rows("a") >= 2 && rows("b") >= 2,
        "status shows the replicas of both hosts:\n{text}\n{}",
        String::from_utf8_lossy(&status.stderr)
    );

    // The cause fixed (the image is back on b), `gantry apply` continues to v2 everywhere.
    p.b.load_images(&[&p.v2]);
    p.write(&p.v2, "pause", "0s", None);
    let o = p.apply();
    assert_eq!(o.status.code(), Some(0), "{}", explain(&o));
    p.assert_running((&p.v2, 2), (&p.v2, 2));
}

#[test]
fn an_image_missing_on_host_b_is_refused_before_anything_changes() {
    let Some((guard, b)) = setup("an_image_missing_on_host_b") else {
        return;
    };
    let p = TwoHosts::new("missing", &guard, b, false);
    p.write(&p.v1, "rollback", "0s", None);
    let o = p.apply();
    assert_eq!(o.status.code(), Some(0), "{}", explain(&o));
    let before = p.assert_running((&p.v1, 2), (&p.v1, 2));
    let upstream = std::fs::read_to_string(&p.nginx.upstream_file).unwrap();

    p.write(&p.v2, "rollback", "0s", None);
    let o = p.apply();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{}", explain(&o));
    assert!(
        stderr.contains("pre-flight")
            && stderr.contains("host `b`")
            && stderr.contains("nothing was changed"),
        "{}",
        explain(&o)
    );
    assert_eq!(p.assert_running((&p.v1, 2), (&p.v1, 2)), before);
    assert_eq!(
        std::fs::read_to_string(&p.nginx.upstream_file).unwrap(),
        upstream
    );
}

#[test]
fn host_b_is_reached_over_verified_tls_only() {
    let Some((guard, b)) = setup("host_b_is_reached_over_verified_tls_only") else {
        return;
    };
    let p = TwoHosts::new("tls", &guard, b, true);
    let endpoint = &p.b.tls_endpoint;

    // Plain HTTP to the TLS port: the engine refuses to talk.
    p.write(
        &p.v1,
        "rollback",
        "0s",
        Some(&format!(
            "[[host]]\nname = \"b\"\ndocker = \"{endpoint}\"\n"
        )),
    );
    let o = p.apply();
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(1), "{}", explain(&o));
    assert!(
        stderr.contains("host `b`") && stderr.contains("HTTPS"),
        "{}",
        explain(&o)
    );

    // TLS, but the engine's certificate checked against another CA (the client's own
    // certificate stands in for it): gantry refuses the engine.
    let t = &p.b.client_tls;
    p.write(
        &p.v1,
        "rollback",
        "0s",
        Some(&format!(
            "[[host]]\nname = \"b\"\ndocker = \"{endpoint}\"\ntls = {{ ca = \"{}\", cert = \"{}\", key = \"{}\" }}\n",
            t.cert.display(),
            t.cert.display(),
            t.key.display()
        )),
    );
    let o = p.apply();
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(1), "{}", explain(&o));
    assert!(
        stderr.contains("host `b`") && stderr.contains("invalid peer certificate"),
        "{}",
        explain(&o)
    );
    assert!(p.replicas(Engine::Main, false).is_empty());
    assert!(p.replicas(Engine::Second(&p.b), false).is_empty());

    // Relative paths are read from the config's directory, like env_file.
    let certs = p.dir.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    for (from, to) in [
        (&t.ca, "ca.pem"),
        (&t.cert, "cert.pem"),
        (&t.key, "key.pem"),
    ] {
        std::fs::copy(from, certs.join(to)).unwrap();
    }
    p.write(
        &p.v1,
        "rollback",
        "0s",
        Some(&format!(
            "[[host]]\nname = \"b\"\ndocker = \"{endpoint}\"\naddress = \"127.0.0.1\"\ntls = {{ ca = \"certs/ca.pem\", cert = \"certs/cert.pem\", key = \"certs/key.pem\" }}\n"
        )),
    );
    let o = p.apply();
    assert_eq!(o.status.code(), Some(0), "{}", explain(&o));
    p.assert_running((&p.v1, 2), (&p.v1, 2));
}

/// `[lb.NAME] hosts` and `rollout.hosts_in_parallel`: one nginx per host, each listing only
/// its own host's replicas, and both hosts rolling at the same time.
#[test]
fn one_nginx_per_host_and_both_hosts_rolling_at_once() {
    let Some((guard, b)) = setup("one_nginx_per_host") else {
        return;
    };
    let p = TwoHosts::new("per-host", &guard, b, true);
    let nginx_b = NginxUnderTest::start(&p.join("nginx-b"), "app_b");
    let write = |image: &str| {
        let lb = |name: &str, host: &str, n: &NginxUnderTest, upstream: &str| {
            let (check, reload) = n.toml_commands();
            format!(
                "[lb.{name}]\nkind = \"nginx\"\nhosts = [\"{host}\"]\nupstream = \"{upstream}\"\nupstream_file = \"{}\"\ncheck = {check}\nreload = {reload}\n",
                n.upstream_file.display()
            )
        };
        p.write_config(
            image,
            None,
            r#"["front-a", "front-b"]"#,
            r#"{ batch = 1, order = "start-first", drain = "200ms", soak = "3s", hosts_in_parallel = 2 }"#,
            &format!(
                "{}\n{}",
                lb("front-a", "a", &p.nginx, "app"),
                lb("front-b", "b", &nginx_b, "app_b")
            ),
        );
    };
    let ports_of = |file: &std::path::Path| -> BTreeSet<u16> {
        std::fs::read_to_string(file)
            .unwrap()
            .lines()
            .filter_map(|l| l.trim().strip_prefix("server 127.0.0.1:"))
            .filter_map(|l| l.split([';', ' ']).next()?.parse().ok())
            .collect()
    };
    let check_members = |context: &str| {
        for (engine, file) in [
            (Engine::Main, p.nginx.upstream_file.clone()),
            (Engine::Second(&p.b), nginx_b.upstream_file.clone()),
        ] {
            let running: BTreeSet<u16> = p.replicas(engine, true).iter().map(|r| r.port).collect();
            assert_eq!(running.len(), 2, "{context}");
            assert_eq!(
                ports_of(&file),
                running,
                "{context}: each nginx lists its own host's replicas only:\n{}",
                std::fs::read_to_string(&file).unwrap()
            );
        }
    };

    write(&p.v1);
    let o = p.apply();
    assert_eq!(o.status.code(), Some(0), "{}", explain(&o));
    check_members("v1");

    write(&p.v2);
    let plan = String::from_utf8_lossy(&p.gantry(&["plan"]).stdout).to_string();
    assert!(plan.contains("2 hosts at a time"), "{plan}");
    let o = p.apply();
    assert_eq!(o.status.code(), Some(0), "{}", explain(&o));
    check_members("v2");
    // Host after host would start b's first v2 replica after a's two batches (6 s of soak
    // at least); at once, they start together (within 3 s: starts on two engines of a loaded
    // 2-core machine were seen 1.8 s apart).
    let started = |engine: Engine, name: &str| -> f64 {
        let t = engine.docker_ok(&["inspect", "--format", "{{.State.StartedAt}}", name]);
        let whole = humantime::parse_rfc3339_weak(&t[..19]).unwrap();
        let frac: f64 = format!("0.{}", t_frac(&t)).parse().unwrap_or(0.0);
        whole
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
            + frac
    };
    let a1 = started(Engine::Main, &format!("{}-web-2-1", p.name));
    let b1 = started(Engine::Second(&p.b), &format!("{}-web-2-1", p.name));
    assert!(
        (a1 - b1).abs() < 3.0,
        "host a's first v2 replica started at {a1}, host b's at {b1}: not at the same time"
    );
}

/// The fraction of a second of an RFC 3339 time (`...T10:00:00.123456789Z` -> `123456789`).
fn t_frac(t: &str) -> String {
    t.split('.')
        .nth(1)
        .map(|f| f.trim_end_matches('Z').chars().take(9).collect())
        .unwrap_or_default()
}
