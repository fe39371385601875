//! Real application stacks deployed by gantry (issue 12's "proof against real parts"): redis
//! with a named volume and a health command, a Python web app that finds it by name, the
//! stand-in of seed 000's Datadog agent, a real nginx in front, all from Debian packages
//! (`support::stack`). Through them: a counter survives a stop-first roll of redis, a
//! rollback and a destroy and re-create; a replica whose process is killed comes back on
//! its port and in nginx with no gantry command; a `publish`ed UDP port answers and the web
//! app reaches the agent by name; a release whose health command fails is restored; and
//! `examples/seed-000-graphql-nginx` is deployed with stand-in images. Skipped without
//! Docker, mmdebstrap or nginx, except under CI=true where they fail.

use std::collections::BTreeSet;
use std::net::UdpSocket;
use std::ops::Deref;
use std::path::Path;
use std::process::Output;
use std::thread;
use std::time::{Duration, Instant};

use crate::support;
use support::debian;
use support::docker::{self, DockerTestGuard};
use support::http;
use support::nginx::{NginxUnderTest, require_nginx};
use support::project::{Project, code, explain, stdout};
use support::stack::{self, StackImages};

/// How long a replica may take to be back, an answer to come, after something happened.
/// (Health commands get a 20 s `timeout`: a Python start takes seconds on a loaded machine.)
const SETTLE: Duration = Duration::from_secs(60);

fn required(test: &str, nginx: bool) -> bool {
    debian::require_debian_images(test) && (!nginx || require_nginx(test))
}

/// A TOML array of strings.
fn array(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

/// A UDP port that was free on 127.0.0.1 a moment ago.
fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("bind udp 127.0.0.1:0")
        .port()
}

/// `text` with `from` replaced by `to`, which must be there.
fn rewrite(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "{from:?} not in:\n{text}");
    text.replace(from, to)
}

/// A project with a real nginx in front of it (upstream `upstream`) and the stack images.
struct Stack {
    nginx: NginxUnderTest,
    images: StackImages,
    /// Last: its directory, where nginx runs, goes after nginx stops.
    p: Project,
}

impl Deref for Stack {
    type Target = Project;
    fn deref(&self) -> &Project {
        &self.p
    }
}

impl Stack {
    fn new(prefix: &str, guard: &DockerTestGuard, upstream: &str) -> Stack {
        let started = Instant::now();
        let images = stack::stack_images();
        eprintln!(
            "stack images ready in {:.1}s",
            started.elapsed().as_secs_f64()
        );
        let p = Project::new(prefix, guard);
        Stack {
            nginx: NginxUnderTest::start(&p.join("nginx"), upstream),
            images,
            p,
        }
    }

    /// `[project]` (the Project builder adds the guard's labels to it).
    fn project(&self) -> String {
        format!("[project]\nname = \"{}\"\n", self.name)
    }

    /// redis with the named volume `data`, appendonly, its health command; `env` rolls it.
    fn redis(&self, env: &str) -> String {
        format!(
            r#"
[service.redis]
image = "{image}"
command = ["redis-server", "--appendonly", "yes", "--dir", "/data"]
volumes = ["data:/data"]
env = {{ ROLL = "{env}" }}
labels = {labels}
stop_grace_period = "5s"
health = {{ command = {health}, interval = "1s", timeout = "20s", retries = 3 }}
"#,
            image = self.images.redis,
            labels = self.labels,
            health = array(&stack::REDIS_HEALTH),
        )
    }

    /// `replicas` of the web app `image`, behind nginx, its health command run by the engine.
    fn web(&self, image: &str, replicas: u32, extra: &str) -> String {
        format!(
            r#"
[service.web]
image = "{image}"
replicas = {replicas}
port = {port}
env = {{ REDIS_HOST = "redis" }}
labels = {labels}
stop_grace_period = "5s"
lb = ["front"]
health = {{ command = {health}, interval = "1s", timeout = "20s", retries = 3 }}
rollout = {{ batch = 1, order = "start-first" }}
{extra}
"#,
            port = stack::WEB_PORT,
            labels = self.labels,
            health = array(&stack::WEB_HEALTH),
        )
    }

    fn lb(&self) -> String {
        let (check, reload) = self.nginx.toml_commands();
        format!(
            r#"
[lb.front]
kind = "nginx"
upstream = "app"
upstream_file = "{file}"
check = {check}
reload = {reload}
"#,
            file = self.nginx.upstream_file.display(),
        )
    }

    /// redis (rolled by `redis_env`) and 3 web replicas of `web_image` behind nginx.
    fn write(&self, redis_env: &str, web_image: &str) {
        self.write_toml(&format!(
            "{}{}{}{}",
            self.project(),
            self.redis(redis_env),
            self.web(web_image, 3, "depends_on = [\"redis\"]"),
            self.lb()
        ));
    }

    fn apply(&self) -> Output {
        self.gantry(&["apply", "--yes", "--progress", "plain"])
    }

    fn apply_ok(&self, what: &str) -> Output {
        let started = Instant::now();
        let o = self.apply();
        assert_eq!(code(&o), 0, "{what}: {}", explain(&o));
        eprintln!("{what}: {:.1}s", started.elapsed().as_secs_f64());
        o
    }

    /// `GET /count` through nginx: the next value of the counter (retried while redis or a
    /// replica is not answering yet; a failed INCR does not count).
    fn count(&self) -> u64 {
        let r = http::wait_for_status(&self.nginx.addr(), "/count", 200, SETTLE)
            .unwrap_or_else(|e| panic!("{e}\n{}", self.diagnose()));
        r.text().trim().parse().unwrap()
    }

    fn upstream(&self) -> String {
        std::fs::read_to_string(&self.nginx.upstream_file).unwrap_or_default()
    }

    fn diagnose(&self) -> String {
        format!(
            "upstream:\n{}\nnginx errors:\n{}\ncontainers:\n{}",
            self.upstream(),
            std::fs::read_to_string(self.nginx.dir.join("error.log")).unwrap_or_default(),
            self.containers(&[], "{{.Names}} {{.Status}} {{.Ports}}")
                .join("\n")
        )
    }
}

fn running(p: &Project, service: &str, format: &str) -> Vec<String> {
    p.containers(
        &[
            "status=running",
            &format!("label=dev.gantry.service={service}"),
        ],
        format,
    )
}

/// The host port the engine published for the container's `port`/tcp.
fn host_port(container: &str, port: u16) -> u16 {
    docker::published_addr(container, port)
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// The agent's `/info` JSON once it has counted `datagrams` (UDP is asynchronous).
fn wait_datagrams(apm: &str, datagrams: u64) -> String {
    let want = format!("\"datagrams\":{datagrams},");
    let deadline = Instant::now() + SETTLE;
    loop {
        let info = http::get(apm, "/info")
            .map(|r| r.text())
            .unwrap_or_default();
        if info.contains(&want) || Instant::now() >= deadline {
            return info;
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// Sends a datagram to `addr` until it is echoed back (the agent answers each one).
fn udp_echo(addr: &str, payload: &[u8]) -> Vec<u8> {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 256];
    let deadline = Instant::now() + SETTLE;
    loop {
        sock.send_to(payload, addr).unwrap();
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            return buf[..n].to_vec();
        }
        assert!(Instant::now() < deadline, "no UDP answer from {addr}");
    }
}

/// Through nginx, a counter kept by redis in its named volume survives a stop-first roll of
/// redis (the plan says why it is stop-first), a rollback, and a destroy and re-create of the
/// redis service. `docker ps` shows the images as written; the volume carries gantry's labels.
#[test]
fn counter_survives_a_redis_roll_a_rollback_and_a_re_create() {
    let test = "counter_survives_a_redis_roll_a_rollback_and_a_re_create";
    if !required(test, true) {
        return;
    }
    let guard = DockerTestGuard::new();
    let s = Stack::new("stk", &guard, "app");
    let web = s.images.web.clone();
    s.write("1", &web);
    s.apply_ok("create");
    assert_eq!(
        running(&s, "redis", "{{.Image}}"),
        [s.images.redis.as_str()],
        "docker ps shows the image as written"
    );
    assert_eq!(running(&s, "web", "{{.Image}}"), vec![web.clone(); 3]);
    let volume = format!("{}_data", s.name);
    let labels = docker::docker_ok(&[
        "volume",
        "inspect",
        "--format",
        "{{range $k, $v := .Labels}}{{$k}}={{$v}}\n{{end}}",
        &volume,
    ]);
    for l in [
        format!("dev.gantry.project={}", s.name),
        "dev.gantry.volume=data".to_string(),
    ] {
        assert!(labels.contains(&l), "{l} in {labels}");
    }
    let upstream = s.upstream();
    assert_eq!(
        upstream.matches("server 127.0.0.1:").count(),
        3,
        "{upstream}"
    );
    let mut expected = 1;
    for _ in 0..3 {
        assert_eq!(s.count(), expected);
        expected += 1;
    }

    // A change of redis rolls it stop-first: the plan says so, and why.
    s.write("2", &web);
    let o = s.gantry(&["plan"]);
    assert!(
        stdout(&o).contains("rolls stop-first: read-write volume `data`"),
        "{}",
        explain(&o)
    );
    let redis_v1 = running(&s, "redis", "{{.Names}}");
    s.apply_ok("stop-first roll of redis");
    let redis_v2 = running(&s, "redis", "{{.Names}}");
    assert_ne!(redis_v1, redis_v2, "redis was replaced");
    assert_eq!(s.count(), expected, "after the roll");
    expected += 1;

    let started = Instant::now();
    let o = s.gantry(&["rollback", "--yes", "--progress", "plain"]);
    assert_eq!(code(&o), 0, "rollback: {}", explain(&o));
    eprintln!("rollback: {:.1}s", started.elapsed().as_secs_f64());
    assert_eq!(
        running(&s, "redis", "{{.Names}}"),
        redis_v1,
        "the fast path"
    );
    assert_eq!(s.count(), expected, "after the rollback");
    expected += 1;

    // Destroy redis (web without it answers 503 to /count meanwhile), then create it again.
    s.write_toml(&format!("{}{}{}", s.project(), s.web(&web, 3, ""), s.lb()));
    let o = s.apply_ok("destroy of redis");
    assert!(
        stdout(&o).contains(&format!("kept volume {volume}")),
        "{}",
        explain(&o)
    );
    assert!(running(&s, "redis", "{{.Names}}").is_empty());
    let r = http::get(&s.nginx.addr(), "/count").unwrap();
    assert_eq!(r.status, 503, "no redis: {}", r.text());
    s.write("3", &web);
    s.apply_ok("re-create of redis");
    assert_eq!(s.count(), expected, "after the destroy and re-create");
    assert_eq!(
        running(&s, "redis", "{{.Image}}"),
        [s.images.redis.as_str()]
    );
}

/// `kill -9` of a web replica's process from the host (not `docker kill`, a manual stop):
/// the engine runs it again within seconds, with no gantry command, on the same host port,
/// still listed by nginx, which sends requests to it again.
#[test]
fn a_killed_replica_is_back_on_its_port_and_in_nginx() {
    let test = "a_killed_replica_is_back_on_its_port_and_in_nginx";
    if !required(test, true) {
        return;
    }
    let guard = DockerTestGuard::new();
    let s = Stack::new("kill", &guard, "app");
    s.write("1", &s.images.web.clone());
    s.apply_ok("create");
    let replicas = running(&s, "web", "{{.Names}}");
    assert_eq!(replicas.len(), 3, "{replicas:?}");
    let hostnames: BTreeSet<String> = replicas
        .iter()
        .map(|c| docker::inspect(c, "{{.Config.Hostname}}"))
        .collect();
    let victim = &replicas[0];
    let port = host_port(victim, stack::WEB_PORT);
    assert!(
        s.upstream().contains(&format!("127.0.0.1:{port}")),
        "{}",
        s.upstream()
    );
    let before = docker::inspect(victim, "{{.State.StartedAt}}");
    let pid: i64 = docker::inspect(victim, "{{.State.Pid}}").parse().unwrap();
    assert!(pid > 1, "pid {pid}");

    let killed = Instant::now();
    support::process::signal("KILL", pid);
    let state = |c: &str| {
        docker::inspect(
            c,
            "{{.State.Running}} {{.RestartCount}} {{.State.StartedAt}}",
        )
    };
    loop {
        let now = state(victim);
        let mut f = now.split_whitespace();
        if f.next() == Some("true") && f.nth(1) != Some(before.as_str()) {
            break;
        }
        assert!(
            killed.elapsed() < SETTLE,
            "{victim} not running again after {SETTLE:?}: {now}"
        );
        thread::sleep(Duration::from_millis(100));
    }
    let back = killed.elapsed();
    eprintln!(
        "{victim} running again {:.1}s after kill -9 ({})",
        back.as_secs_f64(),
        state(victim)
    );
    assert!(back < Duration::from_secs(20), "{back:?}");
    assert_ne!(
        docker::inspect(victim, "{{.RestartCount}}"),
        "0",
        "restarted by the engine"
    );
    assert_eq!(
        host_port(victim, stack::WEB_PORT),
        port,
        "the same host port"
    );
    assert!(
        s.upstream().contains(&format!("127.0.0.1:{port}")),
        "still a member: {}",
        s.upstream()
    );
    // nginx sends to every replica again, the restarted one included.
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + SETTLE;
    while seen != hostnames {
        assert!(
            Instant::now() < deadline,
            "answered: {seen:?}, replicas: {hostnames:?}\n{}",
            s.diagnose()
        );
        if let Ok(r) = http::get(&s.nginx.addr(), "/")
            && r.status == 200
        {
            let v: serde_json::Value = serde_json::from_str(&r.text()).unwrap();
            seen.insert(v["host"].as_str().unwrap().to_string());
        }
    }
    eprintln!(
        "all 3 replicas answer through nginx {:.1}s after the kill",
        killed.elapsed().as_secs_f64()
    );
}

/// The agent's `publish`ed UDP and TCP ports answer on the host; the web app sends it a
/// statsd datagram per `/count`, found by its service name (`DD_AGENT_HOST = "agent"`); the
/// agent reads the host's `/proc` and the engine's socket through read-only mounts.
#[test]
fn published_udp_port_answers_and_web_reaches_the_agent_by_name() {
    let test = "published_udp_port_answers_and_web_reaches_the_agent_by_name";
    if !required(test, false) {
        return;
    }
    let guard = DockerTestGuard::new();
    let images = stack::stack_images();
    let p = Project::new("udp", &guard);
    let (udp, tcp) = (free_udp_port(), docker::free_port());
    let socket = Path::new("/var/run/docker.sock").exists();
    let mut volumes = vec!["\"/proc/:/host/proc/:ro\""];
    if socket {
        volumes.push("\"/var/run/docker.sock:/var/run/docker.sock:ro\"");
    }
    p.write_toml(&format!(
        r#"[project]
name = "{name}"

[service.redis]
image = "{redis}"
labels = {labels}
health = {{ command = {redis_health}, interval = "1s", timeout = "20s", retries = 3 }}

[service.agent]
image = "{agent}"
publish = ["127.0.0.1:{udp}:8125/udp", "127.0.0.1:{tcp}:8126"]
volumes = [{volumes}]
labels = {labels}
stop_grace_period = "5s"
health = {{ command = {agent_health}, interval = "1s", timeout = "20s", retries = 3 }}

[service.web]
image = "{web}"
port = {port}
env = {{ DD_AGENT_HOST = "agent" }}
depends_on = ["redis", "agent"]
labels = {labels}
stop_grace_period = "5s"
health = {{ command = {web_health}, interval = "1s", timeout = "20s", retries = 3 }}
"#,
        name = p.name,
        labels = p.labels,
        redis = images.redis,
        agent = images.agent,
        web = images.web,
        port = stack::WEB_PORT,
        volumes = volumes.join(", "),
        redis_health = array(&stack::REDIS_HEALTH),
        agent_health = array(&stack::AGENT_HEALTH),
        web_health = array(&stack::WEB_HEALTH),
    ));
    let o = p.gantry(&["apply", "--yes", "--progress", "plain"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    assert_eq!(running(&p, "agent", "{{.Image}}"), [images.agent.as_str()]);

    let apm = format!("127.0.0.1:{tcp}");
    let info = http::wait_for_status(&apm, "/info", 200, SETTLE)
        .unwrap()
        .text();
    assert!(info.contains(r#""datagrams":0,"#), "{info}");
    assert!(info.contains(r#""host_proc":true"#), "{info}");
    assert!(
        info.contains(&format!(r#""docker_socket":{socket}"#)),
        "{info}"
    );
    let web = running(&p, "web", "{{.Names}}");
    let addr = docker::published_addr(&web[0], stack::WEB_PORT);
    for n in 1..=3 {
        let r = http::get(&addr, "/count").unwrap();
        assert_eq!((r.status, r.text()), (200, n.to_string()));
    }
    let info = wait_datagrams(&apm, 3);
    assert!(
        info.contains(r#""datagrams":3,"#) && info.contains(r#""last":"web.count:1|c""#),
        "web sends one datagram per /count to `agent`: {info}"
    );

    let statsd = format!("127.0.0.1:{udp}");
    assert_eq!(udp_echo(&statsd, b"host.check:1|c"), b"host.check:1|c");
    let info = http::get(&apm, "/info").unwrap().text();
    assert!(info.contains(r#""last":"host.check:1|c""#), "{info}");
}

/// A web release whose health command fails (the app serves, `/healthz` is 503) stops the
/// rollout at its first replica and restores: exit 3, the output names the replica and the
/// health check's output, and the previous replicas still serve through nginx.
#[test]
fn a_failing_health_command_stops_the_release_and_restores() {
    let test = "a_failing_health_command_stops_the_release_and_restores";
    if !required(test, true) {
        return;
    }
    let guard = DockerTestGuard::new();
    let s = Stack::new("unh", &guard, "app");
    let (web, bad) = (s.images.web.clone(), s.images.web_unhealthy.clone());
    s.write("1", &web);
    s.apply_ok("create");
    let v1 = running(&s, "web", "{{.Names}}");
    let servers = |s: &Stack| -> Vec<String> {
        let mut v: Vec<String> = s
            .upstream()
            .lines()
            .filter(|l| l.contains("server "))
            .map(|l| l.trim().to_string())
            .collect();
        v.sort();
        v
    };
    let upstream = servers(&s);
    assert_eq!(upstream.len(), 3, "{}", s.upstream());
    assert_eq!(s.count(), 1);

    s.write("1", &bad);
    let o = s.apply();
    assert_eq!(code(&o), 3, "{}", explain(&o));
    let out = explain(&o);
    assert!(out.contains("the health command failed"), "{out}");
    assert!(out.contains("NEVER_HEALTHY"), "the check's output: {out}");
    assert!(
        out.contains("service.web: step `health #1` failed: #1: the health command failed"),
        "names the replica: {out}"
    );
    assert_eq!(running(&s, "web", "{{.Names}}"), v1, "restored");
    assert_eq!(running(&s, "web", "{{.Image}}"), vec![web.clone(); 3]);
    assert_eq!(servers(&s), upstream, "nginx sends to the same replicas");
    assert_eq!(s.count(), 2);
    let r = http::get(&s.nginx.addr(), "/version").unwrap();
    assert_eq!(r.text().trim(), "v1");
}

/// `examples/seed-000-graphql-nginx` deployed as written but for what only a production host
/// has: the images (the web app serves as `graphql` with `app serve --port 3308`, the agent
/// stand-in as `datadog`), the nginx files, the published ports (free ones, on loopback),
/// the agent's health command (the stand-in has no curl) and a redis for the app's data
/// (its health check needs one). graphql reaches `datadog` by name; then everything is
/// destroyed.
#[test]
fn seed_000_example_deploys_with_stand_in_images() {
    let test = "seed_000_example_deploys_with_stand_in_images";
    if !required(test, true) {
        return;
    }
    let guard = DockerTestGuard::new();
    let s = Stack::new("seed", &guard, "graphql");
    let example = support::fixtures::root("examples/seed-000-graphql-nginx");
    std::fs::create_dir_all(s.join("env")).unwrap();
    std::fs::copy(example.join("env/graphql.env"), s.join("env/graphql.env")).unwrap();
    let (udp, tcp) = (free_udp_port(), docker::free_port());
    let (check, reload) = s.nginx.toml_commands();
    let mut toml = std::fs::read_to_string(example.join("gantry.toml")).unwrap();
    for (from, to) in [
        ("name = \"games-api\"", format!("name = \"{}\"", s.name)),
        (
            "\"datadog/agent:7.52.0\"",
            format!("\"{}\"", s.images.agent),
        ),
        (
            "\"registry.example/graphql:3074f46\"",
            format!("\"{}\"", s.images.web),
        ),
        (
            "\"8125:8125/udp\", \"8126:8126\"",
            format!("\"127.0.0.1:{udp}:8125/udp\", \"127.0.0.1:{tcp}:8126\""),
        ),
        (
            "command = [\"curl\", \"-f\", \"http://localhost:5555/\"], interval = \"10s\"",
            format!(
                "command = {}, interval = \"1s\"",
                array(&stack::AGENT_HEALTH)
            ),
        ),
        (
            "depends_on = [\"datadog\"]",
            "depends_on = [\"datadog\", \"redis\"]".to_string(),
        ),
        (
            "\"/etc/nginx/conf.d/graphql-upstream.conf\"",
            format!("\"{}\"", s.nginx.upstream_file.display()),
        ),
        ("check = [\"nginx\", \"-t\"]", format!("check = {check}")),
        (
            "reload = [\"nginx\", \"-s\", \"reload\"]",
            format!("reload = {reload}"),
        ),
    ] {
        toml = rewrite(&toml, from, &to);
    }
    if !Path::new("/var/run/docker.sock").exists() {
        toml = rewrite(
            &toml,
            "\"/var/run/docker.sock:/var/run/docker.sock:ro\",",
            "",
        );
    }
    toml.push_str(&format!(
        r#"
[service.redis]
image = "{}"
health = {{ command = {}, interval = "1s", timeout = "20s", retries = 3 }}
"#,
        s.images.redis,
        array(&stack::REDIS_HEALTH)
    ));
    s.write_toml(&toml);
    let apply = |what: &str| {
        let mut c = s.command(&["apply", "--yes", "--progress", "plain"]);
        c.env("DD_API_KEY", "test-api-key")
            .env("DB_PASSWORD", "test-db-password");
        let started = Instant::now();
        let o = support::project::run(c);
        assert_eq!(code(&o), 0, "{what}: {}", explain(&o));
        eprintln!("{what}: {:.1}s", started.elapsed().as_secs_f64());
        let out = explain(&o);
        assert!(
            !out.contains("test-api-key") && !out.contains("test-db-password"),
            "secrets printed: {out}"
        );
    };
    apply("the seed 000 stack");

    let datadog = running(&s, "datadog", "{{.Names}}");
    assert_eq!(datadog.len(), 1, "{datadog:?}");
    assert_eq!(
        running(&s, "datadog", "{{.Image}}"),
        [s.images.agent.as_str()]
    );
    assert_eq!(
        running(&s, "graphql", "{{.Image}}"),
        vec![s.images.web.clone(); 3]
    );
    let mounts = docker::inspect(
        &datadog[0],
        "{{range .Mounts}}{{.Source}}:{{.Destination}}:{{.RW}} {{end}}",
    );
    for m in [
        "/proc:/host/proc:false",
        "/sys/fs/cgroup:/host/sys/fs/cgroup:false",
    ] {
        assert!(mounts.contains(m), "{m} in {mounts}");
    }
    for c in running(&s, "graphql", "{{.Names}}").iter().chain(&datadog) {
        assert_eq!(
            docker::inspect(c, "{{.HostConfig.RestartPolicy.Name}}"),
            "always",
            "{c}"
        );
    }
    let apm = format!("127.0.0.1:{tcp}");
    let info = http::wait_for_status(&apm, "/info", 200, SETTLE)
        .unwrap()
        .text();
    assert!(info.contains(r#""host_proc":true"#), "{info}");
    for n in 1..=3 {
        assert_eq!(s.count(), n);
    }
    let info = wait_datagrams(&apm, 3);
    assert!(
        info.contains(r#""datagrams":3,"#) && info.contains(r#""last":"web.count:1|c""#),
        "graphql sends one datagram per /count to `datadog`: {info}"
    );
    let statsd = format!("127.0.0.1:{udp}");
    assert_eq!(udp_echo(&statsd, b"dogstatsd:1|c"), b"dogstatsd:1|c");

    // Destroy: a configuration with no services.
    s.write_toml(&s.project());
    apply("destroy");
    let left = s.containers(&["status=running"], "{{.Names}}");
    assert!(left.is_empty(), "still running: {left:?}");
}

/// Issue 13's migration: `task.migrate` runs `app migrate N` from web's new image (on the
/// project network, with web's env and its secret) before web rolls, and web's replicas are
/// healthy only once redis holds `schema_version >= N`. A second release migrates again; a
/// release whose migration fails after redis rolled restores redis (exit 3) and leaves web
/// and nginx as they were; one where the failing migration is the only change says nothing
/// changed (exit 1). No task container is ever left, and the secret never shows.
#[test]
fn a_migration_task_runs_before_web_rolls_and_a_failing_one_stops_the_release() {
    let test = "a_migration_task_runs_before_web_rolls_and_a_failing_one_stops_the_release";
    if !required(test, true) {
        return;
    }
    const SECRET: &str = "pa55-w0rd-not-for-logs";
    let guard = DockerTestGuard::new();
    let s = Stack::new("task", &guard, "app");
    let v1 = stack::web_image("VERSION=s1 REQUIRE_SCHEMA=1");
    let v2 = stack::web_image("VERSION=s2 REQUIRE_SCHEMA=2");
    let write = |redis_env: &str, web: &str, migrate: &str| {
        s.write_toml(&format!(
            "{}{}{}{}\n[task.migrate]\nservice = \"web\"\ncommand = [\"app\", \"migrate\", \"{migrate}\"]\ntimeout = \"2m\"\n",
            s.project(),
            s.redis(redis_env),
            s.web(web, 2, "depends_on = [\"redis\"]\nsecret_env = [\"DB_PASSWORD\"]"),
            s.lb()
        ));
    };
    let apply = || {
        support::project::run(
            s.command(&["apply", "--yes", "--progress", "plain"])
                .env("DB_PASSWORD", SECRET),
        )
    };
    let tasks_left = || s.containers(&["label=dev.gantry.task"], "{{.Names}}");

    write("1", &v1, "1");
    let o = s.gantry(&["plan"]);
    assert!(
        stdout(&o).contains("+ task.migrate   run (web is created)"),
        "{}",
        explain(&o)
    );
    let o = apply();
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let out = explain(&o);
    assert!(out.contains("task.migrate: exit 0 after"), "{out}");
    assert!(out.contains("migrate: schema_version 0 -> 1"), "{out}");
    assert!(out.contains("connecting with password ***"), "{out}");
    assert!(!out.contains(SECRET), "the secret is masked: {out}");
    assert_eq!(running(&s, "web", "{{.Image}}"), vec![v1.clone(); 2]);
    assert!(tasks_left().is_empty(), "{:?}", tasks_left());
    let state = s.state_json();
    let run = &state["history"][0]["tasks"]["migrate"];
    assert_eq!(run["exit_code"], 0, "{run:#}");
    assert!(
        run["last_lines"]
            .to_string()
            .contains("schema_version 0 -> 1"),
        "{run:#}"
    );
    assert!(
        !state.to_string().contains(SECRET),
        "no secret in the state"
    );
    let first = s.count();

    // The same config again: nothing to run.
    let o = s.gantry(&["plan", "--detailed-exitcode"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));

    // Release 2 needs schema 2: the task migrates before the new replicas start.
    write("1", &v2, "2");
    let o = s.gantry(&["plan"]);
    assert!(
        stdout(&o).contains("+ task.migrate  run (web's image changes and the task changes)"),
        "{}",
        explain(&o)
    );
    let o = apply();
    assert_eq!(code(&o), 0, "{}", explain(&o));
    assert!(
        explain(&o).contains("migrate: schema_version 1 -> 2"),
        "{}",
        explain(&o)
    );
    assert_eq!(running(&s, "web", "{{.Image}}"), vec![v2.clone(); 2]);
    let web2 = running(&s, "web", "{{.Names}}");
    let upstream = s.upstream();
    assert_eq!(s.count(), first + 1);

    // A failing migration after redis rolled: redis is restored, web never touched.
    let v3 = stack::web_image("VERSION=s3 REQUIRE_SCHEMA=2");
    write("2", &v3, "fail");
    let redis_before = running(&s, "redis", "{{.Names}}");
    let o = apply();
    assert_eq!(code(&o), 3, "{}", explain(&o));
    let out = explain(&o);
    assert!(
        out.contains("task.migrate: step `run `app migrate fail`"),
        "{out}"
    );
    assert!(out.contains("exited with code 1"), "{out}");
    assert!(out.contains("relation \"orders\" already exists"), "{out}");
    assert_eq!(
        running(&s, "redis", "{{.Names}}"),
        redis_before,
        "redis restored"
    );
    assert_eq!(running(&s, "web", "{{.Names}}"), web2, "web untouched");
    assert_eq!(s.upstream(), upstream, "nginx untouched");
    assert!(tasks_left().is_empty(), "{:?}", tasks_left());

    // The failing migration alone: nothing had changed.
    write("1", &v3, "fail");
    let o = apply();
    assert_eq!(code(&o), 1, "{}", explain(&o));
    assert!(
        explain(&o).contains("Nothing had changed"),
        "{}",
        explain(&o)
    );
    assert_eq!(running(&s, "web", "{{.Names}}"), web2);
    assert_eq!(s.upstream(), upstream);
    assert!(tasks_left().is_empty(), "{:?}", tasks_left());
    assert_eq!(s.count(), first + 2, "the counter survived");

    // By hand, from what web runs now (v2): `run` on web's network with its secret...
    let by_hand = |args: &[&str]| support::project::run(s.command(args).env("DB_PASSWORD", SECRET));
    let o = by_hand(&["run", "web", "--", "app", "migrate", "5"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    assert!(
        stdout(&o).contains("migrate: schema_version 2 -> 5"),
        "{}",
        explain(&o)
    );
    let o = by_hand(&[
        "run",
        "web",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 7",
    ]);
    assert_eq!(code(&o), 7, "the command's exit code: {}", explain(&o));
    assert_eq!(stdout(&o), "out\n");
    assert!(
        support::project::stderr(&o).contains("err"),
        "{}",
        explain(&o)
    );
    // ...`run-task` with the task's command, its output masked...
    let o = by_hand(&["run-task", "migrate"]);
    assert_eq!(code(&o), 1, "{}", explain(&o));
    let out = explain(&o);
    assert!(out.contains("connecting with password ***"), "{out}");
    assert!(!out.contains(SECRET), "{out}");
    assert!(out.contains("task.migrate: exit 1 after"), "{out}");
    // ...and what does not exist is named with what does.
    let o = by_hand(&["run", "wbe", "--", "true"]);
    assert_eq!(code(&o), 1, "{}", explain(&o));
    assert!(
        explain(&o).contains("the services applied are: redis, web"),
        "{}",
        explain(&o)
    );
    let o = by_hand(&["run-task", "migrat"]);
    assert_eq!(code(&o), 1, "{}", explain(&o));
    assert!(
        explain(&o).contains("the tasks are: migrate"),
        "{}",
        explain(&o)
    );
    assert!(
        tasks_left().is_empty(),
        "one-off containers are removed: {:?}",
        tasks_left()
    );
    assert_eq!(running(&s, "web", "{{.Names}}"), web2, "web untouched");
}
