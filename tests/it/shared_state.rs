//! One state for the whole team (issue 15): `[state] backend = "s3"` against a real
//! S3-compatible server (moto, see `support::moto`), with several working directories
//! standing for several machines, each with its own credentials in a shared profile file.
//! Two applies racing for the lock; kill -9 of an apply on machine A at random moments,
//! recovered from machine B; a pull-request plan from machine C with read-only credentials
//! and no Docker engine; stale and live locks; the backend going away in the middle of an
//! apply; state pull/push/migrate. Skipped (with a message) without Docker or moto locally;
//! fails under CI.
//!
//! `GANTRY_S3_FAULT_TRIALS` sets the number of kill -9 trials (default 20).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime};

use crate::support::docker::{self, DockerTestGuard};
use crate::support::moto::{Credentials, MotoServer, Relay, require_moto};
use crate::support::process::Background;
use crate::support::project::{Project, code, explain, gantry_command, run, stderr, stdout};

const BUCKET: &str = "gantry-team-state";

/// One machine: a working directory with the configuration and its own AWS profile file.
struct Machine {
    dir: PathBuf,
    credentials: PathBuf,
}

impl Machine {
    fn new(dir: &Path, creds: &Credentials) -> Machine {
        std::fs::create_dir_all(dir).unwrap();
        Machine {
            dir: dir.to_path_buf(),
            credentials: creds.write_profile(dir),
        }
    }

    /// `gantry ARGS` on this machine: the standard AWS chain finds the profile file, and
    /// nothing else (no keys in the environment).
    fn command(&self, args: &[&str]) -> Command {
        let mut c = gantry_command(&self.dir, args);
        c.env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_REGION")
            .env_remove("AWS_DEFAULT_REGION")
            .env_remove("AWS_ENDPOINT")
            .env("AWS_SHARED_CREDENTIALS_FILE", &self.credentials)
            .env("AWS_CONFIG_FILE", "/dev/null")
            // Never the instance metadata service: every machine here has its profile.
            .env("AWS_EC2_METADATA_DISABLED", "true");
        c
    }

    fn gantry(&self, args: &[&str]) -> Output {
        run(self.command(args))
    }

    fn spawn(&self, args: &[&str]) -> Background {
        let mut c = self.command(args);
        c.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        Background::spawn(c, &format!("gantry {}", args.join(" ")))
    }

    fn spawn_logged(&self, args: &[&str]) -> Background {
        let open = || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.join("spawned.log"))
                .unwrap()
        };
        let mut c = self.command(args);
        c.stdout(open()).stderr(open());
        Background::spawn(c, &format!("gantry {}", args.join(" ")))
    }

    fn write_toml(&self, toml: &str) {
        std::fs::write(self.dir.join("gantry.toml"), toml).unwrap();
    }

    /// The state in the backend, through `gantry state pull` (it must always be readable).
    fn state(&self) -> serde_json::Value {
        let o = self.gantry(&["state", "pull"]);
        assert_eq!(code(&o), 0, "state pull\n{}", explain(&o));
        serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("the state is unreadable: {e}\n{}", explain(&o)))
    }

    /// The local copy of the journal (`.gantry/s3/journal.jsonl`).
    fn journal_copy(&self) -> String {
        std::fs::read_to_string(self.dir.join(".gantry/s3/journal.jsonl")).unwrap_or_default()
    }
}

/// The team's configuration: one service of 2 replicas of the test app.
fn config(p: &Project, endpoint: &str, tag: &str, soak: &str, stale: &str) -> String {
    crate::support::project::with_project_labels(
        &format!(
            r#"[project]
name = "{name}"

[state]
backend = "s3"
bucket = "{BUCKET}"
key = "teams/{name}"
region = "us-east-1"
endpoint = "{endpoint}"
stale_lock_after = "{stale}"

[service.web]
image = "gantry-testapp:{tag}"
replicas = 2
port = 8080
labels = {labels}
stop_grace_period = "1s"
health = {{ http = "/healthz", interval = "100ms", timeout = "1s", retries = 30 }}
rollout = {{ batch = 2, order = "start-first", soak = "{soak}" }}
"#,
            name = p.name,
            labels = p.labels,
        ),
        &p.labels,
    )
}

fn ready(test: &str) -> bool {
    docker::require_docker(test) && require_moto(test)
}

/// Every container named after the project is labelled and tracked by the state, and 2
/// replicas of one revision run. Returns that revision.
fn assert_converged(p: &Project, state: &serde_json::Value, context: &str) -> u64 {
    let replicas = state["services"]["web"]["replicas"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let tracked: Vec<String> = replicas
        .iter()
        .map(|r| r["container_id"].as_str().unwrap().to_string())
        .collect();
    let filter = format!("name=^{}-", p.name);
    for line in crate::support::project::containers(&[&filter], "{{.Names}} {{.ID}}") {
        let (name, id) = line.split_once(' ').unwrap();
        assert!(
            tracked.iter().any(|t| t.starts_with(id)),
            "{context}: {name} ({id}) is not in the state: {tracked:?}"
        );
        assert_eq!(
            docker::labels_of(id)
                .get("dev.gantry.project")
                .map(String::as_str),
            Some(p.name.as_str()),
            "{context}: {name} is not labelled"
        );
    }
    let running: Vec<u64> = replicas
        .iter()
        .filter(|r| r["status"] == "running")
        .map(|r| r["revision"].as_u64().unwrap())
        .collect();
    assert_eq!(running.len(), 2, "{context}: running replicas {replicas:?}");
    assert!(
        running.iter().all(|r| *r == running[0]),
        "{context}: mixed revisions {running:?}"
    );
    let engine_running =
        crate::support::project::containers(&[&filter, "status=running"], "{{.ID}}");
    for r in replicas.iter().filter(|r| r["status"] == "running") {
        let id = r["container_id"].as_str().unwrap();
        assert!(
            engine_running.iter().any(|e| id.starts_with(e.as_str())),
            "{context}: recorded running, the engine disagrees: {id}"
        );
    }
    running[0]
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// A lock object as another machine's gantry would have left it.
fn foreign_lock(heartbeat: SystemTime) -> String {
    serde_json::json!({
        "holder": "ci@runner-7",
        "pid": 4242,
        "host": "runner-7",
        "started_at": rfc3339(heartbeat - Duration::from_secs(30)),
        "operation": "apply",
        "heartbeat": rfc3339(heartbeat),
    })
    .to_string()
}

/// Two machines apply at once: exactly one proceeds, the other exits 5 naming it. Then a
/// lock whose holder went silent is taken over, and a live one is not.
#[test]
fn two_applies_race_one_proceeds_and_stale_locks_are_taken_over() {
    if !ready("two_applies_race") {
        return;
    }
    let guard = DockerTestGuard::new();
    let tags = [
        docker::run_tag("s1"),
        docker::run_tag("s2"),
        docker::run_tag("s3"),
    ];
    docker::build_testapp_images_once(&[&tags[0], &tags[1], &tags[2]]);
    let p = Project::new("sr", &guard);
    let moto = MotoServer::start(&p.join("moto"), None);
    moto.create_bucket(BUCKET);
    let creds = Credentials::any();
    let a = Machine::new(&p.join("a"), &creds);
    let b = Machine::new(&p.join("b"), &creds);
    let write = |tag: &str, soak: &str| {
        let toml = config(&p, &moto.endpoint(), tag, soak, "3s");
        a.write_toml(&toml);
        b.write_toml(&toml);
    };
    write(&tags[0], "0s");
    let o = a.gantry(&["apply", "--yes", "--progress", "plain"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    assert_converged(&p, &a.state(), "first apply from A");
    assert!(
        !b.dir.join(".gantry/state.json").exists() && !a.dir.join(".gantry/state.json").exists(),
        "the state lives in the bucket only"
    );

    // The race: both machines apply the same change; the roll soaks for 4 s.
    write(&tags[1], "4s");
    let from_a = a.spawn(&["apply", "--yes", "--progress", "plain"]);
    let from_b = b.spawn(&["apply", "--yes", "--progress", "plain"]);
    let (pid_a, pid_b) = (from_a.id(), from_b.id());
    let (oa, ob) = (
        from_a.wait(Duration::from_secs(120)),
        from_b.wait(Duration::from_secs(120)),
    );
    let mut codes = [code(&oa), code(&ob)];
    codes.sort();
    assert_eq!(codes, [0, 5], "A:\n{}\nB:\n{}", explain(&oa), explain(&ob));
    let (loser, winner_pid) = if code(&oa) == 5 {
        (&oa, pid_b)
    } else {
        (&ob, pid_a)
    };
    let said = stderr(loser);
    assert!(
        said.contains("the state is locked by") && said.contains(&format!("pid {winner_pid}")),
        "the loser names the winner (pid {winner_pid}):\n{said}"
    );
    assert!(said.contains("last heartbeat"), "{said}");
    let state = a.state();
    assert_converged(&p, &state, "after the race");
    assert_eq!(
        state["services"]["web"]["spec"]["image"],
        format!("gantry-testapp:{}", tags[1])
    );

    // A lock left by a machine that died 10 minutes ago: stale (bound 3 s), taken over.
    let lock_key = format!("teams/{}/lock.json", p.name);
    moto.put(
        BUCKET,
        &lock_key,
        &foreign_lock(SystemTime::now() - Duration::from_secs(600)),
        &creds,
    );
    write(&tags[2], "0s");
    let o = b.gantry(&["apply", "--yes", "--progress", "plain"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    assert!(
        stderr(&o).contains("note: taking over the lock left by ci@runner-7")
            && stderr(&o).contains("its last heartbeat was at"),
        "{}",
        explain(&o)
    );
    assert_converged(&p, &b.state(), "after the take-over");
    assert!(
        moto.get(BUCKET, &lock_key, &creds).is_none(),
        "released after the run"
    );

    // A live one (it beat just now) is not taken over: exit 5, the holder and its beat named.
    moto.put(BUCKET, &lock_key, &foreign_lock(SystemTime::now()), &creds);
    write(&tags[1], "0s");
    let o = a.gantry(&["apply", "--yes", "--progress", "plain"]);
    assert_eq!(code(&o), 5, "{}", explain(&o));
    assert!(
        stderr(&o).contains("locked by ci@runner-7 (pid 4242 on runner-7")
            && stderr(&o).contains("last heartbeat"),
        "{}",
        explain(&o)
    );
    assert_eq!(
        b.state()["services"]["web"]["spec"]["image"],
        format!("gantry-testapp:{}", tags[2]),
        "nothing changed"
    );
    let o = a.gantry(&["force-unlock"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    assert!(stdout(&o).contains("ci@runner-7"), "{}", explain(&o));
    assert!(moto.get(BUCKET, &lock_key, &creds).is_none());
}

/// A pull request's plan from machine C: only the configuration, read-only credentials
/// (moto checks IAM), no Docker engine. It sees what A applied, exits 2 with the diff and
/// the serial it planned against, and writes nothing; the same credentials cannot apply.
#[test]
fn pull_request_plan_with_read_only_credentials_and_no_engine() {
    if !ready("pull_request_plan") {
        return;
    }
    let guard = DockerTestGuard::new();
    let tags = [docker::run_tag("p1"), docker::run_tag("p2")];
    docker::build_testapp_images_once(&[&tags[0], &tags[1]]);
    let p = Project::new("sp", &guard);
    // 7 set-up requests (bucket, two users with a policy and a key each), then IAM checks.
    let moto = MotoServer::start(&p.join("moto"), Some(7));
    let (admin, reader) = moto.iam_users(BUCKET);
    let a = Machine::new(&p.join("a"), &admin);
    let c = Machine::new(&p.join("c"), &reader);
    a.write_toml(&config(&p, &moto.endpoint(), &tags[0], "0s", "2m"));
    let o = a.gantry(&["apply", "--yes", "--progress", "plain"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let serial = a.state()["serial"].as_u64().unwrap();

    // C has the pull request's configuration (a new image) and nothing else.
    c.write_toml(&config(&p, &moto.endpoint(), &tags[1], "0s", "2m"));
    let mut cmd = c.command(&["plan", "--detailed-exitcode"]);
    cmd.env("DOCKER_HOST", "tcp://127.0.0.1:9");
    let o = run(cmd);
    assert_eq!(code(&o), 2, "{}", explain(&o));
    let plan = stdout(&o);
    assert!(
        plan.contains(&format!("state serial {serial} of lineage")),
        "the serial planned against:\n{plan}"
    );
    assert!(plan.contains("-/+ service.web"), "{plan}");
    assert!(
        plan.contains(&format!("gantry-testapp:{}", tags[0]))
            && plan.contains(&format!("gantry-testapp:{}", tags[1])),
        "the image change against what A applied:\n{plan}"
    );
    assert!(plan.contains("0 to create, 1 to roll"), "{plan}");
    let o = run(c.command(&["plan", "--format", "json"]));
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(json["prior"]["serial"], serial, "{}", explain(&o));
    assert!(
        !c.dir.join(".gantry").exists(),
        "plan wrote nothing locally"
    );
    assert!(
        moto.list(BUCKET, "", &admin)
            .iter()
            .all(|k| !k.ends_with("lock.json")),
        "plan took no lock"
    );

    // Read-only credentials cannot change anything.
    let o = c.gantry(&["apply", "--yes", "--progress", "plain"]);
    assert_eq!(code(&o), 1, "{}", explain(&o));
    assert!(stderr(&o).contains("state backend"), "{}", explain(&o));
    assert!(!stderr(&o).contains(&reader.secret), "no secret in errors");
    assert_eq!(
        a.state()["serial"].as_u64().unwrap(),
        serial,
        "nothing changed"
    );
    assert_converged(&p, &a.state(), "after the refused apply");

    // The pull request's saved plan, applied after the bucket's state moved: exit 6.
    let saved = c.dir.join("pr.plan");
    let o = run(c.command(&["plan", "--out", saved.to_str().unwrap()]));
    assert_eq!(code(&o), 0, "{}", explain(&o));
    a.write_toml(&std::fs::read_to_string(c.dir.join("gantry.toml")).unwrap());
    let o = a.gantry(&["apply", "--yes", "--progress", "plain"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let o = a.gantry(&["apply", saved.to_str().unwrap(), "--progress", "plain"]);
    assert_eq!(code(&o), 6, "{}", explain(&o));
    assert!(
        stderr(&o).contains(&format!(
            "it was made against state serial {serial}, the state is now at serial"
        )),
        "{}",
        explain(&o)
    );
}

/// kill -9 of an apply on machine A at random moments, each recovered from machine B
/// (`apply --resume` or `rollback`): every trial converges, the state stays readable, and
/// no container is left untracked.
#[test]
fn kill_9_on_one_machine_is_recovered_from_another() {
    if !ready("kill_9_on_one_machine") {
        return;
    }
    let trials: usize = std::env::var("GANTRY_S3_FAULT_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
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
    eprintln!("shared-state fault injection: {trials} trials, GANTRY_FAULT_SEED={seed}");
    let mut rng = seed;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let guard = DockerTestGuard::new();
    let tags = [docker::run_tag("k1"), docker::run_tag("k2")];
    docker::build_testapp_images_once(&[&tags[0], &tags[1]]);
    let p = Project::new("sk", &guard);
    let moto = MotoServer::start(&p.join("moto"), None);
    moto.create_bucket(BUCKET);
    let creds = Credentials::any();
    let a = Machine::new(&p.join("a"), &creds);
    let b = Machine::new(&p.join("b"), &creds);
    let write = |tag: &str| {
        let toml = config(&p, &moto.endpoint(), tag, "0s", "2m");
        a.write_toml(&toml);
        b.write_toml(&toml);
    };
    write(&tags[0]);
    let o = a.gantry(&["apply", "--yes", "--progress", "plain"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    write(&tags[1]);
    let started = Instant::now();
    let o = a.gantry(&["apply", "--yes", "--progress", "plain"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let window = started.elapsed();
    assert_converged(&p, &a.state(), "second apply");
    eprintln!("an uninterrupted roll of 2 replicas with remote state takes {window:?}");

    let test_started = Instant::now();
    let mut during: std::collections::BTreeMap<String, usize> = Default::default();
    let mut unfinished = 0;
    for trial in 0..trials {
        let running = a.state()["services"]["web"]["spec"]["image"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let image = if running.ends_with(tags[0].as_str()) {
            &tags[1]
        } else {
            &tags[0]
        };
        write(image);
        let delay = Duration::from_millis(next() % (window.as_millis() as u64 * 11 / 10).max(1));
        let before = a.journal_copy();
        let child = a.spawn_logged(&["apply", "--yes", "--progress", "plain"]);
        std::thread::sleep(delay);
        child.kill(); // SIGKILL
        let journal = a.journal_copy();
        let where_ = if journal == before {
            "before its journal began".to_string()
        } else if journal.contains("\"event\":\"end\"") {
            "after the end".to_string()
        } else {
            let started = journal.matches("\"event\":\"step_started\"").count();
            format!("after {started} step(s) began")
        };
        *during.entry(where_.clone()).or_default() += 1;
        let context = format!("trial {trial} (killed after {delay:?}, {where_})");

        // Machine B: the state reads, status answers, then it finishes or undoes A's run.
        let _ = b.state();
        let status = b.gantry(&["status"]);
        assert_eq!(code(&status), 0, "{context}: status\n{}", explain(&status));
        unfinished += usize::from(stdout(&status).contains("did not finish"));
        let o = if trial % 2 == 0 {
            b.gantry(&["apply", "--resume", "--yes", "--progress", "plain"])
        } else {
            b.gantry(&["rollback", "--yes", "--progress", "plain"])
        };
        assert_eq!(code(&o), 0, "{context}\n{}", explain(&o));
        assert_converged(&p, &b.state(), &context);
        if trial % 2 == 0 {
            let plan = b.gantry(&["plan", "--detailed-exitcode"]);
            assert_eq!(code(&plan), 0, "{context}: resumed\n{}", explain(&plan));
        }
    }
    let summary: Vec<String> = during.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    eprintln!(
        "shared-state fault injection: {trials} kill -9 trials on A, recovered from B, all converged in {:?}; {unfinished} left an unfinished run; killed {}",
        test_started.elapsed(),
        summary.join(", ")
    );
}

/// The backend goes away before a change (exit 1, nothing changed) and in the middle of an
/// apply (the step fails with a clear error, the engine restores, the journal is kept
/// locally); once it is back, the next command uploads what was kept and converges.
#[test]
fn backend_outage_before_and_during_an_apply() {
    if !ready("backend_outage") {
        return;
    }
    let guard = DockerTestGuard::new();
    let tags = [docker::run_tag("o1"), docker::run_tag("o2")];
    docker::build_testapp_images_once(&[&tags[0], &tags[1]]);
    let p = Project::new("so", &guard);
    let moto = MotoServer::start(&p.join("moto"), None);
    moto.create_bucket(BUCKET);
    let mut relay = Relay::start(moto.port);
    let creds = Credentials::any();
    let a = Machine::new(&p.join("a"), &creds);
    a.write_toml(&config(&p, &relay.endpoint(), &tags[0], "0s", "2m"));
    let o = a.gantry(&["apply", "--yes", "--progress", "plain"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let first = a.state();
    assert_converged(&p, &first, "v1");
    let containers_before =
        crate::support::project::containers(&[&format!("name=^{}-", p.name)], "{{.ID}} {{.State}}");

    // Unreachable before any change: exit 1, nothing changed.
    relay.stop();
    a.write_toml(&config(&p, &relay.endpoint(), &tags[1], "3s", "2m"));
    for args in [&["plan"][..], &["apply", "--yes"][..], &["status"][..]] {
        let o = a.gantry(args);
        assert_eq!(code(&o), 1, "{args:?}\n{}", explain(&o));
        assert!(
            stderr(&o).contains(&format!("state backend s3://{BUCKET}/teams/{}", p.name)),
            "{args:?}: a clear error\n{}",
            explain(&o)
        );
    }
    assert_eq!(
        crate::support::project::containers(&[&format!("name=^{}-", p.name)], "{{.ID}} {{.State}}"),
        containers_before,
        "nothing changed"
    );

    // Gone in the middle: during the soak of the new replicas.
    relay.resume();
    let child = a.spawn_logged(&["apply", "--yes", "--progress", "plain"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !a.journal_copy().contains("\"step\":\"soak") {
        assert!(
            Instant::now() < deadline,
            "no soak began:\n{}",
            a.journal_copy()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    relay.stop();
    let status = child.wait_status(Duration::from_secs(120));
    let log = std::fs::read_to_string(a.dir.join("spawned.log")).unwrap_or_default();
    assert!(
        matches!(status.code(), Some(3 | 4)),
        "the apply failed ({status:?}):\n{log}"
    );
    assert!(log.contains("state backend"), "a clear error:\n{log}");
    let kept = a.journal_copy();
    assert!(
        kept.contains("\"event\":\"restoring\""),
        "the local copy kept it all:\n{kept}"
    );

    // Back: the next command uploads what was kept, and the apply converges.
    relay.resume();
    let o = a.gantry(&["apply", "--yes", "--progress", "plain"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    assert!(
        stderr(&o).contains("kept locally while the backend was unreachable"),
        "{}",
        explain(&o)
    );
    let state = a.state();
    assert_converged(&p, &state, "after the outage");
    assert_eq!(
        state["services"]["web"]["spec"]["image"],
        format!("gantry-testapp:{}", tags[1])
    );
    assert!(state["serial"].as_u64() > first["serial"].as_u64());
    let plan = a.gantry(&["plan", "--detailed-exitcode"]);
    assert_eq!(code(&plan), 0, "{}", explain(&plan));
}

/// `gantry state migrate`, `pull`, `push` (no engine needed): the local state goes to the
/// bucket and back, the source is kept, and a push checks lineage and serial.
#[test]
fn migrate_pull_and_push() {
    if !require_moto("migrate_pull_and_push") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let moto = MotoServer::start(&tmp.path().join("moto"), None);
    moto.create_bucket(BUCKET);
    let creds = Credentials::any();
    let m = Machine::new(&tmp.path().join("m"), &creds);
    let local_toml =
        "[project]\nname = \"mig\"\n\n[service.web]\nimage = \"app:v1\"\nport = 8080\n";
    m.write_toml(local_toml);
    // A local state with history, its backup and a finished journal, as apply leaves them.
    let mut state = gantry::state::State::empty("mig", "lineage-1".into());
    state.serial = 4;
    state.revision = 2;
    let dir = gantry::drivers::fs::StateDir {
        dir: m.dir.join(".gantry"),
    };
    let mut older = state.clone();
    older.serial = 3;
    dir.write(&older).unwrap();
    dir.write(&state).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.dir), 0o700, ".gantry/ is private");
        assert_eq!(mode(&dir.state_path()), 0o600, "state.json is private");
        assert_eq!(mode(&dir.backup_path()), 0o600, "the backup is private");
    }
    let s3_toml = format!(
        "{local_toml}\n[state]\nbackend = \"s3\"\nbucket = \"{BUCKET}\"\nkey = \"mig\"\nendpoint = \"{}\"\n",
        moto.endpoint()
    );
    m.write_toml(&s3_toml);
    let o = m.gantry(&["state", "pull"]);
    assert_eq!(code(&o), 1, "nothing in the bucket yet\n{}", explain(&o));
    let o = m.gantry(&["state", "migrate", "--to", "s3"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    assert!(dir.state_path().exists(), "the local copy is kept");
    let pulled = m.gantry(&["state", "pull"]);
    assert_eq!(code(&pulled), 0, "{}", explain(&pulled));
    assert_eq!(
        pulled.stdout,
        std::fs::read(dir.state_path()).unwrap(),
        "byte for byte"
    );
    assert!(moto.get(BUCKET, "mig/state.json.backup", &creds).is_some());
    let o = m.gantry(&["state", "migrate", "--to", "s3"]);
    assert_eq!(code(&o), 1, "the bucket holds a state now\n{}", explain(&o));

    // push: another lineage and an older serial are refused; a newer one goes in.
    let file = m.dir.join("push.json");
    let mut other = state.clone();
    other.lineage = "lineage-2".into();
    other.serial = 9;
    std::fs::write(&file, other.to_json()).unwrap();
    let o = m.gantry(&["state", "push", file.to_str().unwrap()]);
    assert_eq!(code(&o), 1, "{}", explain(&o));
    assert!(stderr(&o).contains("lineage"), "{}", explain(&o));
    std::fs::write(&file, older.to_json()).unwrap();
    let o = m.gantry(&["state", "push", file.to_str().unwrap()]);
    assert_eq!(code(&o), 1, "{}", explain(&o));
    assert!(stderr(&o).contains("serial 3"), "{}", explain(&o));
    let o = m.gantry(&["state", "push", file.to_str().unwrap(), "--force"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    assert_eq!(
        m.state()["serial"],
        5,
        "forced, the serial still moves forward"
    );
    let mut newer = state.clone();
    newer.serial = 8;
    std::fs::write(&file, newer.to_json()).unwrap();
    let o = m.gantry(&["state", "push", file.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    assert_eq!(m.state()["serial"], 8);

    // And back to a fresh local directory.
    std::fs::remove_dir_all(&dir.dir).unwrap();
    let o = m.gantry(&["state", "migrate", "--to", "local"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    assert_eq!(dir.read().unwrap().unwrap().serial, 8);
    m.write_toml(local_toml);
    let o = m.gantry(&["history"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));

    // Readable by others: a warning, nothing changed.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir.dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let o = m.gantry(&["plan"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    assert!(
        stderr(&o).contains("can be read by other users"),
        "{}",
        explain(&o)
    );
}

/// A run whose lock is taken from it (here removed with `force-unlock` from another machine)
/// learns it at its next heartbeat: it finishes the step in flight and stops (exit 4, as
/// after a first interrupt) instead of going on; the other machine then resumes it.
#[test]
fn a_run_whose_lock_was_taken_stops_after_the_step_in_flight() {
    if !ready("a_run_whose_lock_was_taken") {
        return;
    }
    let guard = DockerTestGuard::new();
    let tags = [docker::run_tag("h1"), docker::run_tag("h2")];
    docker::build_testapp_images_once(&[&tags[0], &tags[1]]);
    let p = Project::new("sh", &guard);
    let moto = MotoServer::start(&p.join("moto"), None);
    moto.create_bucket(BUCKET);
    let creds = Credentials::any();
    let a = Machine::new(&p.join("a"), &creds);
    let b = Machine::new(&p.join("b"), &creds);
    let write = |tag: &str, soak: &str| {
        // A 2 s bound: the holder beats every 500 ms. One replica per batch: a soak
        // follows each.
        let toml = config(&p, &moto.endpoint(), tag, soak, "2s").replace("batch = 2", "batch = 1");
        a.write_toml(&toml);
        b.write_toml(&toml);
    };
    write(&tags[0], "0s");
    let o = a.gantry(&["apply", "--yes", "--progress", "plain"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));

    write(&tags[1], "4s");
    let child = a.spawn(&["apply", "--yes", "--progress", "plain"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !a.journal_copy().contains("\"step\":\"soak") {
        assert!(
            Instant::now() < deadline,
            "no soak began:\n{}",
            a.journal_copy()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let taken = Instant::now();
    let o = b.gantry(&["force-unlock"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let o = child.wait(Duration::from_secs(120));
    assert_eq!(code(&o), 4, "{}", explain(&o));
    assert!(
        stderr(&o).contains("the state lock was taken over by another run or removed"),
        "{}",
        explain(&o)
    );
    assert!(
        taken.elapsed() >= Duration::from_secs(2),
        "the soak in flight finished first ({:?})",
        taken.elapsed()
    );
    let journal = a.journal_copy();
    assert!(journal.contains("\"event\":\"interrupted\""), "{journal}");
    assert!(
        !journal.contains("batch 2/2"),
        "no further step started:\n{journal}"
    );

    let o = b.gantry(&["apply", "--resume", "--yes", "--progress", "plain"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let state = b.state();
    assert_converged(&p, &state, "resumed from B");
    assert_eq!(
        state["services"]["web"]["spec"]["image"],
        format!("gantry-testapp:{}", tags[1])
    );
}
