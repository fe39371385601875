//! Crash safety against the real engine and a real nginx: gantry killed with SIGKILL at
//! random moments of an apply of 4 replicas, then `status` must read the state and the next
//! `apply --resume` or `rollback` must converge, with every container gantry created tracked;
//! the two-step interrupt; and rollbacks to each of the last 3 revisions after their tag
//! moved. Skipped (with a message) without Docker or nginx locally; fails under CI.
//!
//! `GANTRY_FAULT_TRIALS` sets the number of kill -9 trials (default 50).

use std::ops::Deref;
use std::time::{Duration, Instant, SystemTime};

use crate::support;
use crate::support::docker::{self, DockerTestGuard};
use crate::support::nginx::{NginxUnderTest, require_nginx};
use crate::support::process::Background;
use crate::support::project::{GANTRY_TIMEOUT, Project, code, explain};

/// A project of 4 replicas behind a real nginx, in its own directory.
struct Fronted {
    nginx: NginxUnderTest,
    /// Last: its directory, where nginx runs, goes after nginx stops.
    p: Project,
}

impl Deref for Fronted {
    type Target = Project;
    fn deref(&self) -> &Project {
        &self.p
    }
}

impl Fronted {
    fn new(guard: &DockerTestGuard, label: &str) -> Fronted {
        let p = Project::new(label, guard);
        Fronted {
            nginx: NginxUnderTest::start(&p.join("nginx"), "web_backend"),
            p,
        }
    }

    fn write(&self, image: &str, keep_previous: u32, soak: &str) {
        self.write_release(image, image, keep_previous, soak)
    }

    /// `image` with `VERSION = version` in its environment.
    fn write_release(&self, image: &str, version: &str, keep_previous: u32, soak: &str) {
        let (check, reload) = self.nginx.toml_commands();
        self.write_toml(&format!(
            r#"[project]
name = "{name}"
keep_previous = {keep_previous}

[lb.front]
kind = "nginx"
upstream = "web_backend"
upstream_file = "{upstream}"
check = {check}
reload = {reload}

[service.web]
image = "gantry-testapp:{image}"
replicas = 4
port = 8080
env = {{ VERSION = "{version}" }}
labels = {labels}
stop_grace_period = "2s"
lb = ["front"]
health = {{ http = "/healthz", interval = "100ms", timeout = "1s", retries = 20 }}
rollout = {{ batch = 2, order = "start-first", drain = "200ms", soak = "{soak}" }}
"#,
            name = self.name,
            labels = self.labels,
            upstream = self.nginx.upstream_file.display(),
        ));
    }

    /// Starts gantry in the background, its output appended to `spawned.log`.
    fn spawn(&self, args: &[&str]) -> Background {
        self.spawn_logged(args, &self.join("spawned.log"))
    }

    fn spawned_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("spawned.log")).unwrap_or_default()
    }

    fn state(&self) -> serde_json::Value {
        self.state_json()
    }

    fn journal(&self) -> String {
        std::fs::read_to_string(self.dir.path().join(".gantry/journal.jsonl")).unwrap_or_default()
    }

    /// Every container named after the project, labelled or not: `(name, id, running)`.
    fn containers(&self) -> Vec<(String, String, bool)> {
        let filter = format!("name=^{}-", self.name);
        support::project::containers(&[&filter], "{{.Names}} {{.ID}} {{.State}}")
            .iter()
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f[0].to_string(), f[1].to_string(), f[2] == "running")
            })
            .collect()
    }

    /// The state is converged: 4 running replicas of one revision, each tracked, healthy
    /// and the only members of nginx; every container named after the project carries its
    /// labels and is in the state. Returns the running replicas' revision.
    fn assert_converged(&self, context: &str) -> u64 {
        let state = self.state();
        let replicas = state["services"]["web"]["replicas"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let tracked: Vec<String> = replicas
            .iter()
            .map(|r| r["container_id"].as_str().unwrap().to_string())
            .collect();
        for (name, id, _) in self.containers() {
            let labels = docker::labels_of(&id);
            assert_eq!(
                labels.get("dev.gantry.project").map(String::as_str),
                Some(self.name.as_str()),
                "{context}: {name} is not labelled"
            );
            assert!(
                tracked.iter().any(|t| t.starts_with(&id)),
                "{context}: {name} ({id}) is not in the state: {tracked:?}"
            );
        }
        let running: Vec<&serde_json::Value> = replicas
            .iter()
            .filter(|r| r["status"] == "running")
            .collect();
        assert_eq!(running.len(), 4, "{context}: running replicas {running:?}");
        let revisions: Vec<u64> = running
            .iter()
            .map(|r| r["revision"].as_u64().unwrap())
            .collect();
        assert!(
            revisions.iter().all(|r| *r == revisions[0]),
            "{context}: mixed revisions {revisions:?}"
        );
        let engine_running: Vec<String> = self
            .containers()
            .into_iter()
            .filter(|c| c.2)
            .map(|c| c.1)
            .collect();
        let mut ports: Vec<String> = Vec::new();
        for r in &running {
            let id = r["container_id"].as_str().unwrap();
            assert!(
                engine_running.iter().any(|e| id.starts_with(e.as_str())),
                "{context}: recorded running, engine disagrees: {id}"
            );
            ports.push(format!("127.0.0.1:{}", r["host_port"].as_u64().unwrap()));
        }
        let upstream = std::fs::read_to_string(&self.nginx.upstream_file).unwrap();
        let mut servers: Vec<String> = upstream
            .lines()
            .filter_map(|l| l.trim().strip_prefix("server "))
            .map(|l| l.split([' ', ';']).next().unwrap().to_string())
            .collect();
        servers.sort();
        ports.sort();
        assert_eq!(servers, ports, "{context}: nginx members\n{upstream}");
        let r = support::http::get(&self.nginx.addr(), "/version")
            .unwrap_or_else(|e| panic!("{context}: through nginx: {e}"));
        assert_eq!(r.status, 200, "{context}: through nginx");
        revisions[0]
    }
}

/// A small deterministic generator (xorshift), seeded from the clock and printed, so that a
/// failing sequence can be replayed with `GANTRY_FAULT_SEED`.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Where the journal says the killed run was.
fn killed_during(journal: &str) -> String {
    if journal.is_empty() {
        return "before the journal".into();
    }
    let mut open: Vec<String> = Vec::new();
    let mut ended = false;
    for line in journal.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        match v["event"].as_str().unwrap_or_default() {
            "step_started" => open.push(v["step"].as_str().unwrap_or_default().to_string()),
            "step_finished" | "step_failed" => {
                let step = v["step"].as_str().unwrap_or_default();
                open.retain(|s| s != step);
            }
            "end" => ended = true,
            _ => {}
        }
    }
    if ended {
        return "after the end (clean-up)".into();
    }
    match open.last() {
        // "start #1,#2 (new)" -> "start", "#1,#2 (new) join lb.front" -> "join",
        // "#1 (new) replaces #1 (current) in lb.front" -> "replace"
        Some(step) if step.contains(" join ") => "join".into(),
        Some(step) if step.contains(" leave ") => "leave".into(),
        Some(step) if step.contains(" (current) in lb.") => "replace".into(),
        Some(step) => step.split(' ').next().unwrap_or_default().to_string(),
        None => "between steps".into(),
    }
}

#[test]
fn kill_9_at_random_moments_then_the_next_command_converges() {
    if !docker::require_docker("kill_9_at_random_moments") || !require_nginx("kill_9_at_random") {
        return;
    }
    let trials: usize = std::env::var("GANTRY_FAULT_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let seed: u64 = std::env::var("GANTRY_FAULT_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("fault injection: {trials} trials, GANTRY_FAULT_SEED={seed}");
    let mut rng = Rng(seed);
    let guard = DockerTestGuard::new();
    let tags = [docker::run_tag("f1"), docker::run_tag("f2")];
    docker::build_testapp_images_once(&[&tags[0], &tags[1]]);
    let p = Fronted::new(&guard, "fi");
    p.write(&tags[0], 1, "0s");
    let o = p.gantry(&["apply", "--yes", "--progress", "plain"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    p.assert_converged("first apply");
    // How long an uninterrupted roll takes: the window the kills are spread over.
    p.write(&tags[1], 1, "0s");
    let started = Instant::now();
    let o = p.gantry(&["apply", "--yes", "--progress", "plain"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let window = started.elapsed();
    p.assert_converged("second apply");
    eprintln!("an uninterrupted roll of 4 replicas takes {window:?}");

    let mut during: std::collections::BTreeMap<String, usize> = Default::default();
    let (mut resumed, mut rolled_back, mut interrupted_runs) = (0, 0, 0);
    for trial in 0..trials {
        // Always a change: the image the state does not run now.
        let running = p.state()["services"]["web"]["spec"]["image"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let image = if running.ends_with(tags[0].as_str()) {
            &tags[1]
        } else {
            &tags[0]
        };
        p.write(image, 1, "0s");
        let after_begin = (trial / 2) % 2 == 1;
        // The whole run (1.1x its length), or the steps after the journal began (about 0.6x).
        let span = window.as_millis() as u64 * if after_begin { 6 } else { 11 } / 10;
        let delay = Duration::from_millis(rng.next() % span);
        let before = p.journal();
        let child = p.spawn(&["apply", "--yes", "--progress", "plain"]);
        // Every other pair of trials counts from the moment the run's journal begins (after
        // pre-flight), so that most kills land among the steps.
        if after_begin {
            let begun = Instant::now();
            while p.journal() == before {
                assert!(
                    begun.elapsed() < Duration::from_secs(30),
                    "trial {trial}: the apply never began its journal\n{}",
                    p.spawned_log()
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        std::thread::sleep(delay);
        child.kill(); // SIGKILL
        let journal = p.journal();
        let where_ = if journal == before {
            "before its journal began (pre-flight)".to_string()
        } else {
            killed_during(&journal)
        };
        *during.entry(where_.clone()).or_default() += 1;
        let context = format!("trial {trial} (killed after {delay:?}, {where_})");

        // The state file is never unreadable, and status reads it.
        let _ = p.state();
        let status = p.gantry(&["status"]);
        assert_eq!(code(&status), 0, "{context}: status\n{}", explain(&status));
        let pending = String::from_utf8_lossy(&status.stdout).contains("did not finish");
        interrupted_runs += usize::from(pending);

        // Half the time the release engineer resumes, half the time on-call rolls back.
        let o = if trial % 2 == 0 {
            resumed += 1;
            p.gantry(&["apply", "--resume", "--yes", "--progress", "plain"])
        } else {
            rolled_back += 1;
            p.gantry(&["rollback", "--yes", "--progress", "plain"])
        };
        assert_eq!(code(&o), 0, "{context}\n{}", explain(&o));
        p.assert_converged(&context);
        if trial % 2 == 0 {
            let plan = p.gantry(&["plan", "--detailed-exitcode"]);
            assert_eq!(
                code(&plan),
                0,
                "{context}: resume converged\n{}",
                explain(&plan)
            );
        }
    }
    let summary = during
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join(", ");
    eprintln!(
        "fault injection: {trials} kill -9 trials, all converged; {interrupted_runs} left an unfinished run; \
         {resumed} followed by `apply --resume`, {rolled_back} by `rollback`; killed during: {summary}"
    );
}

/// Waits until the journal of run `revision` shows `needle` (an older run's journal may still
/// be there when the process starts).
fn wait_for_journal(p: &Fronted, revision: u64, needle: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let journal = p.journal();
        let first: Option<serde_json::Value> = journal
            .lines()
            .next()
            .and_then(|l| serde_json::from_str(l).ok());
        if first.is_some_and(|b| b["revision"] == revision) && journal.contains(needle) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "journal of revision {revision} never showed {needle}:\n{journal}\n--- gantry's output\n{}",
            p.spawned_log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn interrupt(child: &Background) {
    let pid = child.id().to_string();
    let o = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .output()
        .unwrap();
    assert!(o.status.success());
}

#[test]
fn first_interrupt_stops_after_the_step_second_stops_at_once() {
    if !docker::require_docker("first_interrupt_stops") || !require_nginx("first_interrupt_stops") {
        return;
    }
    let guard = DockerTestGuard::new();
    let tags = [docker::run_tag("i1"), docker::run_tag("i2")];
    docker::build_testapp_images_once(&[&tags[0], &tags[1]]);
    let p = Fronted::new(&guard, "ic");
    p.write(&tags[0], 1, "0s");
    assert_eq!(code(&p.gantry(&["apply", "--yes"])), 0);
    p.assert_converged("v1");

    // One Ctrl-C during the first batch's 3 s soak: the soak finishes, nothing else starts.
    p.write(&tags[1], 1, "3s");
    let child = p.spawn(&["apply", "--yes", "--progress", "plain"]);
    wait_for_journal(&p, 2, "\"step\":\"soak", Duration::from_secs(60));
    let sent = Instant::now();
    interrupt(&child);
    let status = child.wait_status(GANTRY_TIMEOUT);
    assert_eq!(status.code(), Some(4));
    assert!(
        sent.elapsed() >= Duration::from_millis(2000),
        "the soak in flight finished first ({:?})",
        sent.elapsed()
    );
    let journal = p.journal();
    assert!(journal.contains("\"event\":\"interrupted\""), "{journal}");
    assert!(!journal.contains("batch 2/2"), "no further step started");
    let soaks = journal.matches("\"step\":\"soak").count();
    assert_eq!(
        soaks, 2,
        "the soak started and finished, nothing after:\n{journal}"
    );

    // Plan warns, apply without a choice refuses, status names the run.
    let plan = p.gantry(&["plan"]);
    assert!(
        String::from_utf8_lossy(&plan.stderr).contains("it was interrupted (Ctrl-C or SIGTERM)"),
        "{}",
        explain(&plan)
    );
    let o = p.gantry(&["apply", "--yes"]);
    assert_eq!(code(&o), 1, "{}", explain(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("gantry apply --resume"));
    let o = p.gantry(&["apply", "--undo", "--yes", "--progress", "plain"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let revision = p.assert_converged("after --undo");
    assert_eq!(revision, 1, "v1's revision runs again");
    let history = String::from_utf8_lossy(&p.gantry(&["history"]).stdout).to_string();
    assert!(history.contains("interrupted"), "{history}");

    // Two Ctrl-Cs: out at once, mid-soak, with the journal on disk; --resume converges.
    let child = p.spawn(&["apply", "--yes", "--progress", "plain"]);
    wait_for_journal(&p, 3, "\"step\":\"soak", Duration::from_secs(60));
    let sent = Instant::now();
    interrupt(&child);
    std::thread::sleep(Duration::from_millis(100));
    interrupt(&child);
    let status = child.wait_status(GANTRY_TIMEOUT);
    assert_eq!(status.code(), Some(4));
    assert!(
        sent.elapsed() < Duration::from_millis(1500),
        "the second interrupt does not wait for the soak ({:?})",
        sent.elapsed()
    );
    assert!(p.journal().contains("\"event\":\"aborted\""));
    assert!(
        !p.dir.path().join(".gantry/lock.json").exists(),
        "the lock is released"
    );
    p.write(&tags[1], 1, "0s");
    let o = p.gantry(&["apply", "--resume", "--yes", "--progress", "plain"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    p.assert_converged("after --resume");
    assert_eq!(code(&p.gantry(&["plan", "--detailed-exitcode"])), 0);
}

#[test]
fn rollback_to_each_of_the_last_3_revisions_runs_the_recorded_images_after_the_tag_moved() {
    if !docker::require_docker("rollback_to_each_of_the_last_3")
        || !require_nginx("rollback_to_each_of_the_last_3")
    {
        return;
    }
    let guard = DockerTestGuard::new();
    let builds: Vec<String> = (1..=4).map(|i| docker::run_tag(&format!("r{i}"))).collect();
    let refs: Vec<&str> = builds.iter().map(String::as_str).collect();
    docker::build_testapp_images_once(&refs);
    let id = |tag: &str| docker::inspect(&format!("gantry-testapp:{tag}"), "{{.Id}}");
    let ids: Vec<String> = builds.iter().map(|b| id(b)).collect();
    // One tag, re-pointed before every release, as a careless pipeline does with `:stable`.
    let moving = docker::run_tag("moving");
    let p = Fronted::new(&guard, "r3");
    for (i, built) in ids.iter().enumerate() {
        docker::docker_ok(&["tag", built, &format!("gantry-testapp:{moving}")]);
        p.write_release(&moving, &format!("r{}", i + 1), 3, "0s");
        let o = p.gantry(&["apply", "--yes", "--progress", "plain"]);
        assert_eq!(code(&o), 0, "{}", explain(&o));
    }
    assert_eq!(id(&moving), ids[3], "the tag names the newest image");
    let running_images = |p: &Fronted| -> Vec<String> {
        p.containers()
            .into_iter()
            .filter(|c| c.2)
            .map(|c| docker::inspect(&c.1, "{{.Image}}"))
            .collect()
    };
    // Back to revision 3, 2 and 1 in turn: the tag still names the newest image, and each
    // rollback runs exactly what that revision recorded, without pulling.
    for (revision, expected) in [(3, &ids[2]), (2, &ids[1]), (1, &ids[0])] {
        let o = p.gantry(&[
            "rollback",
            "--to",
            &revision.to_string(),
            "--yes",
            "--progress",
            "plain",
        ]);
        assert_eq!(code(&o), 0, "rollback --to {revision}\n{}", explain(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("no image pull, no create"),
            "the fast path restarted the kept containers\n{}",
            explain(&o)
        );
        let images = running_images(&p);
        assert_eq!(images.len(), 4);
        assert!(
            images.iter().all(|i| i == expected),
            "revision {revision}: {images:?} != {expected}"
        );
        p.assert_converged(&format!("rollback --to {revision}"));
    }
}
