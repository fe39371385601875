//! `gantry validate` in the hands of a user who makes mistakes.
//!
//! Every test runs the real binary on a configuration with one (or many) mistakes, from
//! `tests/fixtures/invalid/`, copied into a fresh temporary directory. For each mistake it
//! checks what the user relies on: exit code exactly 1, a headline
//! `error: FILE:LINE:COL: MESSAGE` pointing at the right place (the positions are counted
//! by hand from the fixture and hard-coded), the help where there is one, the trailing
//! `N problems found.` line, and never a panic.

use std::path::Path;
use std::process::Command;

use crate::support::project::run;

/// What one run of `gantry validate` produced.
struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/invalid")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Runs `gantry validate -f FILE` in `dir`, with a colour-free environment.
fn validate_in(dir: &Path, file: &str) -> Outcome {
    let out = run(Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args(["validate", "-f", file])
        .current_dir(dir)
        .env_remove("CLICOLOR_FORCE")
        .env_remove("GITHUB_STEP_SUMMARY")
        .env("NO_COLOR", "1"));
    Outcome {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Writes `source` as `file` in a fresh temporary directory and validates it there.
fn validate_source(file: &str, source: &str) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(file), source).unwrap();
    validate_in(dir.path(), file)
}

/// Validates the fixture `name`, under its own file name.
fn validate_fixture(name: &str) -> Outcome {
    validate_source(name, &fixture(name))
}

fn collapse_whitespace(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl Outcome {
    /// Exit 1, nothing on stdout, no panic, and the problem count matching the headlines.
    fn assert_rejected(&self, problems: usize) -> &Self {
        assert!(
            !self.stderr.contains("panicked") && !self.stdout.contains("panicked"),
            "gantry panicked:\n{}",
            self.stderr
        );
        assert_eq!(
            self.code,
            Some(1),
            "exit code\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        assert_eq!(self.stdout, "", "nothing on stdout when invalid");
        assert_eq!(
            self.headlines().len(),
            problems,
            "number of `error:` headlines in:\n{}",
            self.stderr
        );
        let last = self.stderr.lines().rev().find(|l| !l.trim().is_empty());
        let expected = format!(
            "{problems} problem{} found.",
            if problems == 1 { "" } else { "s" }
        );
        assert_eq!(
            last,
            Some(expected.as_str()),
            "last line of:\n{}",
            self.stderr
        );
        self
    }

    /// Exit 0, the one-line summary on stdout, nothing on stderr.
    fn assert_valid(&self) -> &Self {
        assert!(
            !self.stderr.contains("panicked"),
            "gantry panicked:\n{}",
            self.stderr
        );
        assert_eq!(
            self.code,
            Some(0),
            "exit code\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        assert!(
            self.stdout.contains(" is valid: "),
            "stdout:\n{}",
            self.stdout
        );
        assert_eq!(self.stderr, "", "nothing on stderr when valid");
        self
    }

    fn headlines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| l.starts_with("error: "))
            .collect()
    }

    /// The diagnostic whose headline is exactly `error: FILE:LINE:COL: ...` and whose
    /// message contains `message`; returns its whole block (headline, snippet, help) with
    /// whitespace collapsed, so that wrapped help lines can be searched.
    fn diagnostic(&self, file: &str, line: usize, col: usize, message: &str) -> String {
        let prefix = format!("error: {file}:{line}:{col}: ");
        let lines: Vec<&str> = self.stderr.lines().collect();
        let start = lines.iter().position(|l| {
            l.strip_prefix(prefix.as_str())
                .is_some_and(|m| m.contains(message))
        });
        let Some(start) = start else {
            panic!(
                "no headline `{prefix}...{message}...`; headlines were:\n{}\n\nfull stderr:\n{}",
                self.headlines().join("\n"),
                self.stderr
            );
        };
        let end = lines[start + 1..]
            .iter()
            .position(|l| l.starts_with("error: "))
            .map_or(lines.len(), |i| start + 1 + i);
        collapse_whitespace(&lines[start..end].join("\n"))
    }
}

fn assert_has(block: &str, needle: &str) {
    assert!(block.contains(needle), "expected `{needle}` in:\n{block}");
}

// ---------------------------------------------------------------------------------------
// TOML syntax

#[test]
fn unclosed_table_header_is_a_syntax_error_at_the_missing_bracket() {
    let f = "syntax_unclosed_header.toml";
    // Line 4 is `[service.api`: the `]` is missing right after `api`, column 13.
    let out = validate_fixture(f);
    out.assert_rejected(1);
    out.diagnostic(f, 4, 13, "invalid TOML");
}

#[test]
fn unterminated_string_is_a_syntax_error_at_the_end_of_its_line() {
    let f = "syntax_unterminated_string.toml";
    // Line 5 is `image = "shop/api:1.4.2` (23 characters): the closing quote is due at 24.
    let out = validate_fixture(f);
    out.assert_rejected(1);
    let d = out.diagnostic(f, 5, 24, "invalid TOML");
    assert_has(&d, "expected `\"`");
}

// ---------------------------------------------------------------------------------------
// Unknown keys

#[test]
fn unknown_top_level_table_suggests_service() {
    let f = "unknown_top_level_key.toml";
    // `[services.api]` on line 4: the key starts after the `[`.
    let out = validate_fixture(f);
    out.assert_rejected(1);
    let d = out.diagnostic(f, 4, 2, "unknown key `services`");
    assert_has(&d, "did you mean `service`?");
}

#[test]
fn unknown_key_in_a_service_suggests_the_real_one() {
    let f = "unknown_service_key.toml";
    let out = validate_fixture(f);
    out.assert_rejected(1);
    let d = out.diagnostic(f, 6, 1, "unknown key `replica`");
    assert_has(&d, "did you mean `replicas`?");
}

#[test]
fn unknown_key_in_a_health_table_suggests_the_real_one() {
    let f = "unknown_health_key.toml";
    let out = validate_fixture(f);
    out.assert_rejected(1);
    let d = out.diagnostic(f, 11, 1, "unknown key `intervall`");
    assert_has(&d, "did you mean `interval`?");
    assert_has(&d, "`start_period`");
}

#[test]
fn unknown_keys_in_a_service_and_in_its_health_table_are_all_reported() {
    // Regression: a table opened by a `[header]` is spanned by its header only, and the
    // error collector used to give up after the first error inside such a table.
    let f = "unknown_keys_service_and_health.toml";
    let out = validate_fixture(f);
    out.assert_rejected(2);
    assert_has(
        &out.diagnostic(f, 6, 1, "unknown key `replica`"),
        "did you mean `replicas`?",
    );
    assert_has(
        &out.diagnostic(f, 11, 1, "unknown key `intervall`"),
        "did you mean `interval`?",
    );
}

// ---------------------------------------------------------------------------------------
// Values

#[test]
fn replicas_given_as_a_word_is_a_wrong_type_at_the_value() {
    let f = "wrong_type_replicas.toml";
    let out = validate_fixture(f);
    out.assert_rejected(1);
    let d = out.diagnostic(f, 6, 12, "wrong type");
    assert_has(&d, "\"three\"");
}

#[test]
fn zero_replicas_is_refused_at_the_value() {
    let f = "zero_replicas.toml";
    let out = validate_fixture(f);
    out.assert_rejected(1);
    out.diagnostic(f, 6, 12, "`replicas` must be at least 1, found 0");
}

#[test]
fn rollout_batch_larger_than_replicas_is_refused() {
    let f = "batch_larger_than_replicas.toml";
    let out = validate_fixture(f);
    out.assert_rejected(1);
    let d = out.diagnostic(f, 10, 9, "`batch` (3) is larger than `replicas` (2)");
    assert_has(&d, "use a batch between 1 and 2");
}

#[test]
fn warmup_needing_zero_successes_is_refused() {
    let f = "warmup_zero_successes.toml";
    let out = validate_fixture(f);
    out.assert_rejected(1);
    out.diagnostic(f, 12, 13, "`successes` must be at least 1, found 0");
}

#[test]
fn durations_without_a_unit_or_number_are_refused_at_the_value() {
    let f = "invalid_duration.toml";
    let out = validate_fixture(f);
    out.assert_rejected(2);
    out.diagnostic(f, 7, 21, "invalid duration `30`");
    // Line 8 has `ü` and `ß` before the value: columns count characters, not bytes
    // (the opening quote of "soon" is byte 42 but character 40).
    out.diagnostic(f, 8, 40, "invalid duration `soon`");
}

#[test]
fn unknown_rollout_order_word_suggests_the_spelling() {
    let f = "unknown_enum_word.toml";
    let out = validate_fixture(f);
    out.assert_rejected(1);
    let d = out.diagnostic(f, 11, 9, "invalid `order` value `start_first`");
    assert_has(&d, "did you mean `start-first`?");
    assert_has(&d, "`stop-first`");
}

// ---------------------------------------------------------------------------------------
// Images

#[test]
fn image_without_tag_and_image_with_latest_are_refused() {
    let f = "mutable_tags.toml";
    let out = validate_fixture(f);
    out.assert_rejected(2);
    let d = out.diagnostic(f, 5, 9, "image `nginx` has no tag");
    assert_has(&d, "allow_mutable_tag = true");
    let d = out.diagnostic(f, 9, 9, "uses the moving tag `latest`");
    assert_has(&d, "registry.example:5000/shop/api:latest");
}

#[test]
fn allow_mutable_tag_accepts_an_untagged_and_a_latest_image() {
    let source = fixture("mutable_tags.toml");
    let allowed = source
        .replace(
            "image = \"nginx\"\n",
            "image = \"nginx\"\nallow_mutable_tag = true\n",
        )
        .replace(
            "image = \"registry.example:5000/shop/api:latest\"\n",
            "image = \"registry.example:5000/shop/api:latest\"\nallow_mutable_tag = true\n",
        );
    assert_eq!(allowed.matches("allow_mutable_tag = true").count(), 2);
    validate_source("gantry.toml", &allowed).assert_valid();
}

// ---------------------------------------------------------------------------------------
// References and the dependency graph

#[test]
fn depends_on_a_missing_service_lists_the_services_and_suggests_the_closest() {
    let f = "missing_dependency.toml";
    // `depends_on = ["cache", "dbb"]`: `"dbb"` opens at column 24.
    let out = validate_fixture(f);
    out.assert_rejected(1);
    let d = out.diagnostic(f, 8, 24, "names service `dbb`, which does not exist");
    assert_has(&d, "did you mean `db`?");
    assert_has(&d, "defined: `api`, `cache` and `db`");
}

#[test]
fn lb_naming_a_missing_load_balancer_suggests_the_closest() {
    let f = "missing_lb.toml";
    let out = validate_fixture(f);
    out.assert_rejected(1);
    let d = out.diagnostic(
        f,
        17,
        7,
        "names load balancer `fornt`, which does not exist",
    );
    assert_has(&d, "did you mean `front`?");
}

#[test]
fn dependency_cycle_is_printed_whole() {
    let f = "dependency_cycle.toml";
    // api -> cache -> db -> api; `web` depends on the cycle but is not part of it.
    let out = validate_fixture(f);
    out.assert_rejected(1);
    let d = out.diagnostic(f, 6, 15, "dependency cycle: api -> cache -> db -> api");
    assert!(!out.headlines()[0].contains("web"), "{d}");
}

#[test]
fn self_dependency_is_refused_at_the_entry() {
    let f = "self_dependency.toml";
    // `depends_on = ["db", "worker"]`: `"worker"` opens at column 21.
    let out = validate_fixture(f);
    out.assert_rejected(1);
    out.diagnostic(f, 9, 21, "service `worker` depends on itself");
}

#[test]
fn cycle_through_a_service_with_another_error_is_still_reported() {
    // Regression: cycles used to be searched among fully valid services only, so a
    // service with a second mistake hid its cycle until the first was fixed.
    let f = "cycle_member_with_other_error.toml";
    let out = validate_fixture(f);
    out.assert_rejected(4);
    out.diagnostic(f, 6, 12, "`replicas` must be at least 1, found 0");
    out.diagnostic(f, 7, 15, "service `orders` depends on itself");
    out.diagnostic(f, 11, 15, "dependency cycle: api -> db -> api");
    out.diagnostic(f, 14, 9, "image `postgres` has no tag");
}

// ---------------------------------------------------------------------------------------
// Host ports

#[test]
fn overlapping_host_port_ranges_on_one_host_are_refused() {
    let f = "duplicate_host_ports.toml";
    // api claims 18080-18089 (line 8), web 18085-18094 (line 14): the second claim is wrong.
    let out = validate_fixture(f);
    out.assert_rejected(1);
    let d = out.diagnostic(f, 14, 14, "duplicate host ports");
    assert_has(&d, "service `web` (18085-18094)");
    assert_has(&d, "service `api` (18080-18089)");
    assert_has(&d, "`api` claims 18080-18089 here");
}

#[test]
fn overlapping_host_ports_are_blamed_on_the_later_declaration() {
    let f = "duplicate_host_ports_file_order.toml";
    // web claims 18080-18089 on line 8; admin, declared after it, claims 18089-18092 on
    // line 14. `admin` sorts before `web`, which must not change where the error is.
    let out = validate_fixture(f);
    out.assert_rejected(1);
    let d = out.diagnostic(f, 14, 14, "duplicate host ports");
    assert_has(&d, "`web` claims 18080-18089 here");
}

#[test]
fn host_port_range_must_hold_the_replicas_and_the_rollout_surge() {
    let f = "host_ports_too_narrow.toml";
    // 4 replicas + 1 started beside them (start-first, batch 1) need 5 ports; 4 are given.
    let out = validate_fixture(f);
    out.assert_rejected(1);
    let d = out.diagnostic(
        f,
        8,
        14,
        "host_ports 18080-18083 has 4 port(s) but service `api` needs 5",
    );
    assert_has(&d, "stop-first");
}

#[test]
fn same_host_ports_on_different_hosts_or_disjoint_ranges_are_valid() {
    let source = r#"
[project]
name = "shop"

[[host]]
name = "edge-1"
docker = "tcp://10.0.0.5:2376"
tls = { ca = "ca.pem", cert = "cert.pem", key = "key.pem" }

[[host]]
name = "edge-2"
docker = "https://10.0.0.6:2376"
tls = { ca = "ca.pem", cert = "cert.pem", key = "key.pem" }

[service.api]
image = "shop/api:1.4.2"
replicas = 4
port = 8080
host_ports = "18080-18089"
hosts = ["edge-1"]

[service.web]
image = "shop/web:2.0.1"
replicas = 4
port = 8080
host_ports = "18080-18089"
hosts = ["edge-2"]

[service.admin]
image = "shop/admin:0.9.0"
replicas = 1
port = 9000
host_ports = "18090-18091"
"#;
    validate_source("gantry.toml", source).assert_valid();
}

// ---------------------------------------------------------------------------------------
// Files and load balancers

#[test]
fn missing_env_file_is_refused_at_its_path_and_accepted_once_it_exists() {
    let f = "missing_env_file.toml";
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(f), fixture(f)).unwrap();

    let out = validate_in(dir.path(), f);
    out.assert_rejected(1);
    let d = out.diagnostic(f, 8, 12, "env_file `secrets/api.env`");
    assert_has(&d, "not found");
    assert_has(&d, "relative to the config file's directory");

    std::fs::create_dir(dir.path().join("secrets")).unwrap();
    std::fs::write(
        dir.path().join("secrets/api.env"),
        "DATABASE_URL=postgres://db/shop\n",
    )
    .unwrap();
    validate_in(dir.path(), f).assert_valid();
}

#[test]
fn nginx_load_balancer_without_upstream_file_is_refused_at_its_name() {
    let f = "nginx_missing_upstream_file.toml";
    // `[lb.front]` on line 9: the name starts at column 5.
    let out = validate_fixture(f);
    out.assert_rejected(1);
    out.diagnostic(
        f,
        9,
        5,
        "load balancer `front` (kind = \"nginx\") needs `upstream_file`",
    );
}

#[test]
fn two_load_balancers_sharing_an_upstream_file_are_refused_at_the_second() {
    let f = "shared_upstream_file.toml";
    // internal (line 12) then public (line 17) name the same include file.
    let out = validate_fixture(f);
    out.assert_rejected(1);
    let d = out.diagnostic(f, 17, 17, "is already owned by another load balancer");
    assert_has(&d, "first used here");
}

#[test]
fn shared_upstream_file_is_blamed_on_the_later_declaration() {
    let f = "shared_upstream_file_order.toml";
    // public (line 12) then internal (line 17): `internal` sorts first, which must not
    // change which declaration is the duplicate.
    let out = validate_fixture(f);
    out.assert_rejected(1);
    out.diagnostic(f, 17, 17, "is already owned by another load balancer");
}

// ---------------------------------------------------------------------------------------
// The file as a whole

#[test]
fn empty_file_misses_the_project_table() {
    let f = "empty.toml";
    assert_eq!(fixture(f), "");
    let out = validate_fixture(f);
    out.assert_rejected(1);
    let d = out.diagnostic(f, 1, 1, "missing `[project]` table");
    assert_has(&d, "add `[project]`");
}

#[test]
fn file_without_project_table_is_refused() {
    let f = "missing_project.toml";
    let out = validate_fixture(f);
    out.assert_rejected(1);
    out.diagnostic(f, 1, 1, "missing `[project]` table");
}

#[test]
fn every_mistake_of_a_file_is_reported_in_one_run() {
    let f = "many_mistakes.toml";
    let out = validate_fixture(f);
    let expected: [(usize, usize, &str); 11] = [
        (
            10,
            26,
            "service `gateway` names service `payments`, which does not exist",
        ),
        (
            13,
            9,
            "`batch` (4) is larger than `replicas` (2) of service `gateway`",
        ),
        (14, 9, "invalid `order` value `start_first`"),
        (17, 9, "image `shop/catalog` has no tag"),
        (18, 12, "`replicas` must be at least 1, found 0"),
        (23, 12, "invalid duration `2`"),
        (27, 1, "unknown key `replica`"),
        (32, 8, "wrong type: string \"8083\""),
        (37, 15, "service `orders` depends on itself"),
        (41, 12, "env_file `mailer.env`"),
        (
            43,
            5,
            "load balancer `edge` (kind = \"nginx\") needs `upstream_file`",
        ),
    ];
    out.assert_rejected(expected.len());
    for (line, col, message) in expected {
        out.diagnostic(f, line, col, message);
    }
    // Listed in file order.
    let positions: Vec<(usize, usize)> = out
        .headlines()
        .iter()
        .map(|h| {
            let rest = h
                .strip_prefix(&format!("error: {f}:"))
                .expect("headline with a position");
            let mut parts = rest.splitn(3, ':');
            let line = parts.next().unwrap().parse().unwrap();
            let col = parts.next().unwrap().parse().unwrap();
            (line, col)
        })
        .collect();
    let want: Vec<(usize, usize)> = expected.iter().map(|(l, c, _)| (*l, *c)).collect();
    assert_eq!(positions, want);
}

#[test]
fn a_valid_configuration_exits_zero() {
    let source = r#"
# The shop, without mistakes.
[project]
name = "shop"

[service.db]
image = "postgres:16.2"
port = 5432
stop_grace_period = "30 s"

[service.api]
image = "shop/api:1.4.2"
replicas = 3
port = 8080
host_ports = "18080-18089"
env = { LOG_LEVEL = "info" }
env_file = "api.env"
depends_on = ["db"]
lb = ["front"]

[service.api.health]
http = "/healthz"
interval = "2s"
timeout = "500ms"

[service.api.warmup]
http = "/warm"
max_latency = "250ms"
successes = 5

[service.api.rollout]
batch = 1
order = "start-first"
drain = "5s"

[lb.front]
kind = "nginx"
upstream = "shop_api"
upstream_file = "/etc/nginx/conf.d/shop-api.conf"
"#;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("gantry.toml"), source).unwrap();
    std::fs::write(
        dir.path().join("api.env"),
        "DATABASE_URL=postgres://db/shop\n",
    )
    .unwrap();
    let out = validate_in(dir.path(), "gantry.toml");
    out.assert_valid();
    assert_has(
        &out.stdout,
        "gantry.toml is valid: project `shop`, 2 services, 1 load balancer",
    );
    assert_has(&out.stdout, "3 waves of dependencies");
}

#[test]
fn weights_must_name_member_services() {
    let dir = tempfile::tempdir().unwrap();
    let toml = "[project]\nname = \"p\"\n\n[service.web]\nimage = \"app:1\"\nport = 80\nlb = [\"front\"]\n\n[lb.front]\nkind = \"nginx\"\nupstream = \"u\"\nupstream_file = \"u.conf\"\nweights = { web = 2, api = 3 }\n";
    std::fs::write(dir.path().join("gantry.toml"), toml).unwrap();
    let o = run(std::process::Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args(["validate"])
        .current_dir(dir.path())
        .env("NO_COLOR", "1"));
    assert_eq!(o.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains(
            "error: gantry.toml:13:28: `weights` names `api`, which is not a member service"
        ),
        "{stderr}"
    );
}

// ---------------------------------------------------------------------------------------
// Docker Swarm (`runtime = "swarm"`)

#[test]
fn swarm_services_reject_what_swarm_cannot_do() {
    let f = "swarm_mistakes.toml";
    let out = validate_fixture(f);
    out.assert_rejected(6);
    // No `hosts` while two are declared: which one is the manager?
    let d = out.diagnostic(
        f,
        12,
        10,
        "service `api` runs on Docker Swarm but names no manager",
    );
    assert_has(&d, "one of `edge` and `manager`");
    // The routing mesh publishes one port for all replicas.
    let d = out.diagnostic(
        f,
        17,
        14,
        "`host_ports` must be one port, found 18080-18083",
    );
    assert_has(&d, "e.g. `host_ports = 8080`");
    // Swarm checks health inside the container.
    let d = out.diagnostic(f, 18, 19, "runs health checks inside the container");
    assert_has(&d, "use `command`");
    out.diagnostic(f, 19, 24, "`strategy = \"blue-green\"` is not available");
    out.diagnostic(
        f,
        24,
        21,
        "service `worker` runs on Docker Swarm and names 2 hosts",
    );
    let d = out.diagnostic(f, 27, 11, "invalid `runtime` value `swarn`");
    assert_has(&d, "did you mean `swarm`?");
}

#[test]
fn a_swarm_service_with_one_manager_a_command_health_check_and_one_port_is_valid() {
    let source = r#"
[project]
name = "shop"

[[host]]
name = "manager"
docker = "unix:///var/run/docker.sock"

[[host]]
name = "edge"
docker = "tcp://127.0.0.1:2375"

[service.api]
runtime = "swarm"
image = "shop/api:1.4.2"
hosts = ["manager"]
replicas = 6
port = 8080
host_ports = 18080
health = { command = ["/api", "--healthcheck"], interval = "2s", retries = 3 }
rollout = { batch = 2, order = "start-first", soak = "10s" }
"#;
    validate_source("gantry.toml", source).assert_valid();
}

// ---------------------------------------------------------------------------------------
// Container options (issue 12)

#[test]
fn container_option_strings_that_do_not_parse_are_refused_each_with_a_help() {
    let f = "container_mistakes.toml";
    let out = validate_fixture(f);
    out.assert_rejected(15);
    // volumes = ["cache-data", "./logs:/logs", "/proc/:/host/proc/:rx"] on line 6.
    let d = out.diagnostic(
        f,
        6,
        12,
        "invalid volume `cache-data`: write SOURCE:TARGET[:ro]",
    );
    assert_has(&d, "volumes = [\"cache-data:/data\"");
    let d = out.diagnostic(f, 6, 26, "the host path `./logs` is relative");
    assert_has(&d, "bind mounts take absolute host paths only");
    assert_has(&d, "\"/srv/app/logs:/logs\"");
    let d = out.diagnostic(f, 6, 42, "unknown mode `rx`");
    assert_has(&d, "end with `:ro` to mount read-only");
    // publish = ["8125/udp", "8000-8010:80"] on line 7.
    let d = out.diagnostic(f, 7, 12, "invalid port `8125/udp`");
    assert_has(&d, "[HOST_IP:]HOST_PORT:CONTAINER_PORT[/udp]");
    let d = out.diagnostic(f, 7, 24, "ranges are not supported");
    assert_has(&d, "one port per entry");
    // ulimits on line 8: a table without `hard`, a word, a negative limit, a typo.
    let d = out.diagnostic(f, 8, 22, "a ulimit table needs both `soft` and `hard`");
    assert_has(&d, "nofile = { soft = 20000, hard = 40000 }");
    let d = out.diagnostic(f, 8, 48, "wrong type: string \"many\", expected a ulimit");
    assert_has(&d, "nproc = 65535");
    let d = out.diagnostic(f, 8, 63, "ulimit `core`: -5 is not a limit");
    assert_has(&d, "-1 for unlimited");
    let d = out.diagnostic(f, 8, 77, "unknown ulimit `nofiles`");
    assert_has(&d, "did you mean `nofile`?");
    // cap_add = ["SYS_ADMN", "CAP_NET_ADMIN"]: the prefix `CAP_` is accepted, and so is
    // `all` in lower case (line 10).
    let d = out.diagnostic(f, 9, 12, "unknown capability `SYS_ADMN` in `cap_add`");
    assert_has(&d, "did you mean `SYS_ADMIN`?");
    let d = out.diagnostic(
        f,
        11,
        10,
        "invalid `tmpfs` `tmp`: the path must be absolute",
    );
    assert_has(&d, "tmpfs = [\"/tmp\"]");
    let d = out.diagnostic(f, 12, 16, "invalid `extra_hosts` entry `metadata`");
    assert_has(&d, "write NAME:IP");
    let d = out.diagnostic(f, 13, 12, "invalid device `dev/fuse`");
    assert_has(&d, "HOST_PATH[:CONTAINER_PATH[:PERMISSIONS]]");
    let d = out.diagnostic(f, 14, 15, "`working_dir` must be an absolute path");
    assert_has(&d, "working_dir = \"/app\"");
    // The service's name becomes its DNS alias on the project network.
    let d = out.diagnostic(f, 16, 10, "invalid service name `my_api`");
    assert_has(&d, "its DNS name on the project network");
    assert_has(&d, "e.g. `my-api`");
}

#[test]
fn two_copies_of_a_stateful_or_fixed_port_replica_at_once_are_refused() {
    let f = "stateful_rollouts.toml";
    let out = validate_fixture(f);
    out.assert_rejected(5);
    // A read-write named volume and an explicit start-first (line 7, `"start-first"`).
    let d = out.diagnostic(
        f,
        7,
        21,
        "service `redis` mounts the named volume `cache-data` read-write: rolling start-first, two copies of the process would write `cache-data` at once",
    );
    assert_has(&d, "rolls stop-first by default");
    assert_has(&d, "`:ro`");
    // ... and blue-green (a read-only bind mount beside it changes nothing).
    let d = out.diagnostic(
        f,
        12,
        24,
        "with blue-green, two copies of the process would write `index` at once",
    );
    assert_has(&d, "strategy = \"rolling\"");
    // A fixed host port: one replica per host, stop-first.
    let d = out.diagnostic(
        f,
        16,
        12,
        "service `agent` publishes the fixed host port `8125:8125/udp`: a fixed host port allows one replica per host and stop-first",
    );
    assert_has(&d, "2 replicas on each host");
    assert_has(
        &d,
        "`order = \"stop-first\"` (the default here) and `replicas = 1`",
    );
    assert_has(&d, "`host_ports`");
    out.diagnostic(
        f,
        18,
        21,
        "a fixed host port allows one replica per host and stop-first",
    );
    // The host's network: `port` is bound on the host itself.
    let d = out.diagnostic(
        f,
        24,
        12,
        "service `edge` runs on the host's network and listens on its port 8080",
    );
    assert_has(&d, "leave `network_mode` out");
}

#[test]
fn published_ports_clash_per_protocol_and_address_across_services() {
    let f = "publish_clashes.toml";
    let out = validate_fixture(f);
    // agent: 8125/udp, 127.0.0.1:8126. statsd: 8125 (TCP: no clash with UDP),
    // 127.0.0.2:8126 (another address: no clash), 8125/udp (clash). api: host_ports
    // 8120-8125 (clashes with statsd's TCP 8125). edge: the host's network on 8126, every
    // address (clashes with both 8126 of a single address).
    out.assert_rejected(4);
    let d = out.diagnostic(
        f,
        10,
        48,
        "duplicate host ports: service `statsd` (8125/udp) and service `agent` (8125/udp) overlap",
    );
    assert_has(&d, "`agent` claims 8125/udp here");
    assert_has(&d, "UDP and TCP on one number");
    out.diagnostic(
        f,
        15,
        14,
        "service `api` (8120-8125) and service `statsd` (8125) overlap",
    );
    out.diagnostic(
        f,
        20,
        8,
        "service `edge` (8126) and service `agent` (127.0.0.1:8126) overlap",
    );
    out.diagnostic(
        f,
        20,
        8,
        "service `edge` (8126) and service `statsd` (127.0.0.2:8126) overlap",
    );
}

#[test]
fn network_mode_none_with_a_port_and_host_with_host_ports_are_refused() {
    let source = r#"[project]
name = "shop"

[service.batch]
image = "registry.example/batch:1.0.0"
network_mode = "none"
port = 8080

[service.edge]
image = "registry.example/edge:2.1.0"
network_mode = "host"
port = 8080
host_ports = 18080
networks = ["shared"]
"#;
    let out = validate_source("gantry.toml", source);
    out.assert_rejected(3);
    let d = out.diagnostic("gantry.toml", 7, 8, "nothing can reach its `port`");
    assert_has(&d, "remove `port`");
    let d = out.diagnostic(
        "gantry.toml",
        13,
        14,
        "runs on the host's network: it publishes no `host_ports`",
    );
    assert_has(&d, "remove `host_ports`");
    out.diagnostic(
        "gantry.toml",
        14,
        13,
        "sets `network_mode` and also joins network `shared`",
    );
}

#[test]
fn the_container_options_of_issue_12_validate() {
    // The issue's example stack, with every container option written once. No `order`
    // under `agent` (fixed ports) and `web` (a read-only volume): stop-first is the default
    // where it must be.
    let source = r#"[project]
name = "shop"
labels = { team = "games" }

[service.redis]
image = "registry.example/redis:7.2"
command = ["redis-server", "--appendonly", "yes", "--dir", "/data"]
volumes = ["cache-data:/data"]
restart = "unless-stopped"
health = { command = ["redis-cli", "ping"], interval = "1s" }

[service.agent]
image = "registry.example/agent:7.52.0"
volumes = ["/var/run/docker.sock:/var/run/docker.sock:ro", "/proc/:/host/proc/:ro"]
publish = ["8125:8125/udp", "127.0.0.1:8126:8126"]
cap_add = ["SYS_ADMIN"]
pid = "host"
privileged = true

[service.statsd]
image = "registry.example/statsd:0.10.2"
publish = ["8125:8125", "127.0.0.2:8126:8126"]

[service.web]
image = "registry.example/web:3074f46"
replicas = 3
port = 8080
env = { REDIS_HOST = "redis", DD_AGENT_HOST = "agent" }
depends_on = ["redis"]
entrypoint = ["/usr/bin/tini", "--"]
command = ["web"]
user = "1000:1000"
working_dir = "/app"
read_only = true
tmpfs = ["/tmp"]
volumes = ["cache-data:/cache:ro"]
restart = "on-failure:5"
networks = ["shared-logging"]
cap_drop = ["ALL"]
init = true
shm_size = "256m"
sysctls = { "net.core.somaxconn" = 1024 }
ulimits = { nofile = { soft = 20000, hard = 40000 }, nproc = 65535 }
extra_hosts = ["metadata:169.254.169.254", "gateway:host-gateway"]
devices = ["/dev/fuse"]
rollout = { order = "start-first", batch = 2 }

[service.edge]
image = "registry.example/edge:2.1.0"
network_mode = "host"
port = 9443
health = { http = "/healthz" }
"#;
    validate_source("gantry.toml", source).assert_valid();
}

#[test]
fn the_probed_port_in_publish_and_a_tmpfs_over_a_volume_are_refused() {
    let source = r#"[project]
name = "shop"

[service.web]
image = "registry.example/web:3074f46"
port = 8080
publish = ["80:8080", "8125:8080/udp"]
volumes = ["cache-data:/data"]
tmpfs = ["/data", "/tmp"]
"#;
    let out = validate_source("gantry.toml", source);
    out.assert_rejected(2);
    let d = out.diagnostic(
        "gantry.toml",
        7,
        12,
        "service `web` publishes its `port` 8080 in `publish` as well",
    );
    assert_has(&d, "write `host_ports = 80` instead");
    let d = out.diagnostic(
        "gantry.toml",
        9,
        10,
        "service `web` mounts a volume and a `tmpfs` at `/data`",
    );
    assert_has(&d, "each container path takes one mount");
}

#[test]
fn a_fixed_host_port_refuses_blue_green() {
    let source = r#"[project]
name = "shop"

[service.agent]
image = "registry.example/agent:7.52.0"
publish = ["8125:8125/udp"]
rollout = { strategy = "blue-green" }
"#;
    let out = validate_source("gantry.toml", source);
    out.assert_rejected(1);
    let d = out.diagnostic(
        "gantry.toml",
        7,
        24,
        "service `agent` publishes the fixed host port `8125:8125/udp`: a fixed host port allows one replica per host and stop-first",
    );
    assert_has(&d, "runs a second colour beside the live one");
}

#[test]
fn the_project_network_is_not_listed_in_networks() {
    let source = r#"[project]
name = "shop"

[service.web]
image = "registry.example/web:3074f46"
networks = ["shared-logging", "shop"]
"#;
    let out = validate_source("gantry.toml", source);
    out.assert_rejected(1);
    let d = out.diagnostic(
        "gantry.toml",
        6,
        31,
        "service `web` lists the project's own network `shop` in `networks`",
    );
    assert_has(&d, "joins the project's network already");
}

// ---------------------------------------------------------------------------------------
// Container options a Swarm service spec has no field for (model/validate/swarm.rs)

#[test]
fn swarm_services_refuse_the_container_options_the_service_api_lacks() {
    let source = r#"[project]
name = "shop"

[service.agent]
runtime = "swarm"
image = "agent:7.52.0"
privileged = true
devices = ["/dev/fuse"]
pid = "host"
entrypoint = []
publish = ["127.0.0.1:8126:8126", "8125:8125/udp"]
tmpfs = ["/run:uid=1000"]

[service.worker]
runtime = "swarm"
image = "worker:1.0"
network_mode = "none"
shm_size = "64m"
tmpfs = ["/dev/shm"]
"#;
    let f = "gantry.toml";
    let out = validate_source(f, source);
    out.assert_rejected(8);
    // A plain boolean has no span of its own: the service's table is where it is.
    let d = out.diagnostic(f, 4, 10, "whose service spec has no privileged mode");
    assert_has(&d, "cap_add");
    assert_has(&d, "runtime = \"container\"");
    let d = out.diagnostic(f, 8, 12, "whose service spec has no host devices");
    assert_has(&d, "remove `devices`");
    out.diagnostic(f, 9, 7, "whose service spec has no PID namespace setting");
    let d = out.diagnostic(f, 4, 10, "cannot clear the image's ENTRYPOINT");
    assert_has(&d, "entrypoint = [\"/app/server\"]");
    let d = out.diagnostic(f, 11, 12, "it cannot bind `127.0.0.1` only");
    assert_has(&d, "write \"8126:8126\"");
    let d = out.diagnostic(
        f,
        12,
        10,
        "take `size=`, `mode=` and `ro` only, not `uid=1000`",
    );
    assert_has(&d, "/run:size=64m,mode=1777");
    let d = out.diagnostic(f, 17, 16, "which has no `none` network for services");
    assert_has(&d, "network_mode = \"host\"");
    out.diagnostic(f, 18, 12, "mounts something else at /dev/shm");
}

#[test]
fn a_swarm_service_with_the_options_swarm_has_is_valid() {
    let source = r#"[project]
name = "shop"

[service.redis]
runtime = "swarm"
image = "registry.example/redis:7.2"
entrypoint = ["redis-server"]
command = ["--appendonly", "yes"]
user = "999:999"
working_dir = "/data"
volumes = ["cache-data:/data", "/etc/ssl:/etc/ssl:ro"]
tmpfs = ["/tmp:size=16m,mode=1777", "/run"]
shm_size = "64m"
restart = "on-failure:3"
read_only = true
init = true
cap_add = ["NET_ADMIN"]
cap_drop = ["ALL"]
sysctls = { "net.core.somaxconn" = 1024 }
ulimits = { nofile = { soft = 1000, hard = 2000 } }
extra_hosts = ["metadata:169.254.169.254"]
publish = ["6379:6379", "8125:8125/udp"]
networks = ["shared"]
health = { command = ["redis-cli", "ping"] }

[service.agent]
runtime = "swarm"
image = "registry.example/agent:7.52.0"
network_mode = "host"
"#;
    validate_source("gantry.toml", source).assert_valid();
}

#[test]
fn tasks_name_a_service_a_program_a_run_word_a_timeout_and_close_no_cycle() {
    let out = validate_fixture("tasks.toml");
    out.assert_rejected(5);
    let f = "tasks.toml";
    let d = out.diagnostic(
        f,
        17,
        11,
        "task `migrate` names service `wbe`, which does not exist",
    );
    assert_has(&d, "defined: `redis`, `web` and `worker`");
    out.diagnostic(f, 18, 11, "`command` must name a program: it is empty");
    let d = out.diagnostic(f, 19, 7, "invalid `run` value `sometimes`");
    assert_has(&d, "expected one of `on-change` and `always`");
    let d = out.diagnostic(
        f,
        24,
        15,
        "dependency cycle through task.seed: service.web -> task.seed -> service.worker -> service.web",
    );
    assert_has(&d, "it cannot wait for its own service");
    out.diagnostic(f, 25, 11, "`timeout` of a task must be more than 0");
}

#[test]
fn a_task_cannot_run_from_a_swarm_service() {
    let source = r#"[project]
name = "shop"

[service.web]
image = "registry.example/web:3074f46"
runtime = "swarm"

[task.migrate]
service = "web"
command = ["migrate"]
"#;
    let out = validate_source("gantry.toml", source);
    out.assert_rejected(1);
    let d = out.diagnostic(
        "gantry.toml",
        9,
        11,
        "task `migrate` runs from service `web`, which runs on Docker Swarm",
    );
    assert_has(&d, "tasks run as containers on the service's first host");
}

// ---------------------------------------------------------------------------------------
// [registry."HOST"]

#[test]
fn registry_sections_are_checked_each_at_its_place() {
    let source = r#"[project]
name = "shop"

[service.web]
image = "registry.example/web:3074f46"

[registry."https://registry.example"]
username = "ci"
password_env = "REGISTRY_PASSWORD"

[registry."localhost:5000"]
username = ""
password_env = "1-PASSWORD"

[registry."docker.io"]
username = "ci"
password_env = "HUB_TOKEN"
passwd = "x"
"#;
    let out = validate_source("gantry.toml", source);
    out.assert_rejected(4);
    let d = out.diagnostic(
        "gantry.toml",
        7,
        11,
        "invalid registry host `https://registry.example`",
    );
    assert_has(&d, "[registry.\"registry.example\"]");
    out.diagnostic(
        "gantry.toml",
        12,
        12,
        "registry `localhost:5000` has an empty `username`",
    );
    out.diagnostic(
        "gantry.toml",
        13,
        16,
        "registry `localhost:5000` `password_env` is `1-PASSWORD`, which is not a variable name",
    );
    out.diagnostic("gantry.toml", 18, 1, "passwd");
}

#[test]
fn a_registry_section_is_valid_without_its_variable_set() {
    // Whether the variable is set is pre-flight's question: `plan` runs without secrets.
    let source = r#"[project]
name = "shop"

[service.web]
image = "registry.example/web:3074f46"

[registry."registry.example"]
username = "ci"
password_env = "GANTRY_TEST_UNSET_REGISTRY_PASSWORD"
"#;
    validate_source("gantry.toml", source).assert_valid();
}

#[test]
fn malformed_ssh_endpoints_and_misplaced_tls_are_refused_where_they_are_written() {
    let source = r#"[project]
name = "shop"

[[host]]
name = "edge-1"
docker = "ssh://deploy@10.0.0.5:22x"

[[host]]
name = "edge-2"
docker = "unix:///var/run/docker.sock"
tls = { ca = "ca.pem", cert = "cert.pem", key = "key.pem" }

[[host]]
name = "edge-3"
docker = "ssh://deploy@10.0.0.7"
tls = { ca = "ca.pem", cert = "cert.pem", key = "key.pem" }

[[host]]
name = "edge-4"
docker = "ssh://deploy@10.0.0.8:2222"
"#;
    let out = validate_source("gantry.toml", source);
    out.assert_rejected(3);
    let d = out.diagnostic(
        "gantry.toml",
        6,
        10,
        "invalid SSH endpoint `ssh://deploy@10.0.0.5:22x`: `22x` is not a port",
    );
    assert_has(&d, "ssh://user@host:2222");
    out.diagnostic("gantry.toml", 10, 10, "`tls` applies to `tcp://` endpoints");
    out.diagnostic("gantry.toml", 15, 10, "SSH secures an `ssh://` one");
}

#[test]
fn load_balancer_machines_in_at_are_checked_where_they_are_written() {
    let source = r#"[project]
name = "shop"

[service.web]
image = "shop/web:1"
port = 8080
lb = ["front", "back", "side"]

[lb.front]
kind = "nginx"
at = ["ssh://deploy@nginx-1", "ssh://deploy@nginx-2:x"]
upstream = "web"
upstream_file = "conf.d/web.conf"

[lb.back]
kind = "haproxy"
at = ["ssh://deploy@lb-1", "ssh://deploy@lb-2"]
socket = "run/haproxy.sock"
backend = "web"

[lb.side]
kind = "command"
at = ["ssh://deploy@lb-3"]
join = ["true"]
leave = ["true"]
"#;
    let out = validate_source("gantry.toml", source);
    out.assert_rejected(4);
    out.diagnostic(
        "gantry.toml",
        11,
        31,
        "invalid machine `ssh://deploy@nginx-2:x` in `at`: `x` is not a port",
    );
    out.diagnostic(
        "gantry.toml",
        13,
        17,
        "`upstream_file` `conf.d/web.conf` must be an absolute path on the machines of `at`",
    );
    out.diagnostic(
        "gantry.toml",
        18,
        10,
        "with `at`, `socket` is the absolute path of the stats socket on that machine",
    );
    out.diagnostic(
        "gantry.toml",
        22,
        8,
        "`at` is a setting of `kind = \"nginx\"`, not of `kind = \"command\"`",
    );
}
