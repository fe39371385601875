//! `gantry import` through the real binary (issue 16, part 1): seed 000's stack file
//! imports, the result validates and plans offline, and the list of what was not mapped
//! names exactly what gantry lacks; the CLI contract (exit codes, `-o`, `--force`, `-o -`,
//! `--format json`); secrets never written anywhere.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::project::{gantry_command, run};

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/import")
        .join(rel)
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn explain(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        text(&o.stdout),
        text(&o.stderr)
    )
}

/// `gantry ARGS` in `dir` with `HOME` set to `home` (the seed's env files are under
/// `$HOME/env/`), and no Compose variables from the test's own environment.
fn gantry_in(dir: &Path, home: &Path, args: &[&str]) -> Output {
    let mut c: Command = gantry_command(dir, args);
    c.env("HOME", home).env_remove("COMPOSE_PROJECT_NAME");
    // The variables the tests' Compose files use come from their `.env` files only.
    for var in [
        "TAG",
        "DB_PASSWORD",
        "POSTGRES_PASSWORD",
        "WEB_TAG",
        "SECRET_KEY",
    ] {
        c.env_remove(var);
    }
    run(c)
}

/// A directory with seed 000's Compose file, and a HOME holding the env files it names.
fn seed_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture("seed-000/docker-compose.yaml"),
        dir.path().join("docker-compose.yaml"),
    )
    .unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(home.join("env")).unwrap();
    std::fs::write(home.join("env/.env"), "DD_API_KEY=from-env-file\n").unwrap();
    std::fs::write(home.join("env/.env.datadog"), "DD_SITE=datadoghq.com\n").unwrap();
    (dir, home)
}

/// The `not mapped` lines of the text report: (line, key).
fn unmapped(stderr: &str) -> Vec<(usize, String)> {
    stderr
        .lines()
        .skip_while(|l| !l.starts_with("not mapped"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .map(|l| {
            let l = l.trim_start();
            let (place, rest) = l.split_once("  ").unwrap();
            let line = place.rsplit(':').next().unwrap().parse().unwrap();
            (line, rest.split_once(": ").unwrap().0.to_string())
        })
        .collect()
}

/// What gantry lacks for seed 000's stack file, and nothing else: a real image reference
/// (the article masks it), reservations (gantry sets limits), and Swarm's routing mesh
/// (one host port for three replicas: gantry publishes each replica on its own port and
/// puts a load balancer in front). Lines are those of the fixture.
const SEED_000_UNMAPPED: [(usize, &str); 4] = [
    (5, "services.app.image"),
    (13, "services.app.deploy.resources.reservations.cpus"),
    (14, "services.app.deploy.resources.reservations.memory"),
    (30, "services.app.ports[0]"),
];

#[test]
fn seed_000_imports_validates_plans_and_lists_exactly_what_gantry_lacks() {
    let (dir, home) = seed_dir();
    let o = gantry_in(dir.path(), &home, &["import", "docker-compose.yaml"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let stderr = text(&o.stderr);
    let want: Vec<(usize, String)> = SEED_000_UNMAPPED
        .iter()
        .map(|(l, k)| (*l, k.to_string()))
        .collect();
    assert_eq!(unmapped(&stderr), want, "{stderr}");
    assert!(
        stderr.starts_with("wrote gantry.toml: project `"),
        "{stderr}"
    );

    let toml = std::fs::read_to_string(dir.path().join("gantry.toml")).unwrap();
    for line in [
        "replicas = 3  # docker-compose.yaml:8",
        "port = 3308  # docker-compose.yaml:30",
        "restart = \"always\"  # docker-compose.yaml:10",
        "stop_grace_period = \"30s\"  # docker-compose.yaml:15",
        "log = { max_files = 10, max_size = \"100m\" }  # docker-compose.yaml:47",
        "publish = [\"8125:8125\", \"8126:8126\"]  # docker-compose.yaml:63",
        "command = [\"curl\", \"-f\", \"http://localhost:3308/healthcheck\"]  # docker-compose.yaml:35",
    ] {
        assert!(toml.lines().any(|l| l == line), "no `{line}` in:\n{toml}");
    }
    let env_file = format!("env_file = \"{}/env/.env\"", home.display());
    assert!(toml.contains(&env_file), "{toml}");

    // The result is a configuration like any other: it validates, and plans offline.
    let o = gantry_in(dir.path(), &home, &["validate"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let o = gantry_in(dir.path(), &home, &["plan", "--detailed-exitcode"]);
    assert_eq!(code(&o), 2, "{}", explain(&o));
    let plan = text(&o.stdout);
    assert!(
        plan.contains("+ service.app      create 3 replicas"),
        "{plan}"
    );
    assert!(
        plan.contains("+ service.datadog  create 1 replica"),
        "{plan}"
    );
    // The env file's values are secret to gantry: the plan names, never shows them.
    assert!(!plan.contains("from-env-file"), "{plan}");

    // The JSON report lists the same.
    std::fs::remove_file(dir.path().join("gantry.toml")).unwrap();
    let o = gantry_in(
        dir.path(),
        &home,
        &["import", "docker-compose.yaml", "--format", "json"],
    );
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["format_version"], 1);
    assert_eq!(v["services"], serde_json::json!(["app", "datadog"]));
    assert_eq!(v["tasks"], serde_json::json!([]));
    let keys: Vec<(u64, &str)> = v["unmapped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (u["line"].as_u64().unwrap(), u["key"].as_str().unwrap()))
        .collect();
    let want: Vec<(u64, &str)> = SEED_000_UNMAPPED
        .iter()
        .map(|(l, k)| (*l as u64, *k))
        .collect();
    assert_eq!(keys, want);
}

#[test]
fn the_seed_as_printed_is_refused_at_its_line_and_column() {
    // The article masks the image as `****:****`: a plain YAML value cannot start with
    // `*` (an alias), so Compose would refuse the file too. Exit 1, the place named.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture("seed-000/as-printed.yaml"),
        dir.path().join("docker-compose.yaml"),
    )
    .unwrap();
    let o = gantry_in(dir.path(), dir.path(), &["import", "docker-compose.yaml"]);
    assert_eq!(code(&o), 1, "{}", explain(&o));
    let stderr = text(&o.stderr);
    assert!(
        stderr.starts_with("error: docker-compose.yaml:5:12: "),
        "{stderr}"
    );
    assert!(stderr.contains("quote it"), "{stderr}");
    assert!(!dir.path().join("gantry.toml").exists());
}

/// The fixture in the repository differs from the article's text only by the quotes
/// around the two masked values.
#[test]
fn the_seed_fixture_is_the_article_with_two_values_quoted() {
    let printed = std::fs::read_to_string(fixture("seed-000/as-printed.yaml")).unwrap();
    let quoted = std::fs::read_to_string(fixture("seed-000/docker-compose.yaml")).unwrap();
    let diff: Vec<(&str, &str)> = printed
        .lines()
        .zip(quoted.lines())
        .filter(|(a, b)| a != b)
        .collect();
    assert_eq!(
        diff,
        [
            ("    image: ****:****", "    image: \"****:****\""),
            (
                "      com.datadoghq.tags.version: ******",
                "      com.datadoghq.tags.version: \"******\""
            ),
        ]
    );
    assert_eq!(printed.lines().count(), quoted.lines().count());
}

#[test]
fn an_existing_output_is_kept_unless_force() {
    let (dir, home) = seed_dir();
    std::fs::write(dir.path().join("gantry.toml"), "# mine\n").unwrap();
    let o = gantry_in(dir.path(), &home, &["import", "docker-compose.yaml"]);
    assert_eq!(code(&o), 1, "{}", explain(&o));
    assert!(text(&o.stderr).contains("--force"), "{}", explain(&o));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("gantry.toml")).unwrap(),
        "# mine\n"
    );
    let o = gantry_in(
        dir.path(),
        &home,
        &["import", "docker-compose.yaml", "--force"],
    );
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let written = std::fs::read_to_string(dir.path().join("gantry.toml")).unwrap();
    assert!(written.starts_with("# Imported by `gantry import`"));

    // `-o` elsewhere; `-o -` to stdout, byte-identical on every run (and to the file).
    let o = gantry_in(
        dir.path(),
        &home,
        &["import", "docker-compose.yaml", "-o", "-"],
    );
    assert_eq!(code(&o), 0, "{}", explain(&o));
    assert_eq!(text(&o.stdout), written);
    let again = gantry_in(
        dir.path(),
        &home,
        &["import", "docker-compose.yaml", "-o", "-"],
    );
    assert_eq!(o.stdout, again.stdout);
    assert!(text(&o.stderr).starts_with("imported docker-compose.yaml"));
    let o = gantry_in(
        dir.path(),
        &home,
        &["import", "docker-compose.yaml", "-o", "other.toml"],
    );
    assert_eq!(code(&o), 0, "{}", explain(&o));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("other.toml")).unwrap(),
        written
    );
    // Without `-o`, the configuration file of `-f` (as every command reads it).
    let o = gantry_in(
        dir.path(),
        &home,
        &["-f", "prod.toml", "import", "docker-compose.yaml"],
    );
    assert_eq!(code(&o), 0, "{}", explain(&o));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("prod.toml")).unwrap(),
        written
    );
}

#[test]
fn a_missing_file_is_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let o = gantry_in(dir.path(), dir.path(), &["import", "nope.yaml"]);
    assert_eq!(code(&o), 1, "{}", explain(&o));
    assert!(text(&o.stderr).contains("nope.yaml"), "{}", explain(&o));
    let o = gantry_in(dir.path(), dir.path(), &["import"]);
    assert_eq!(code(&o), 1, "usage errors are 1, never 2: {}", explain(&o));
}

#[test]
fn secrets_are_never_written_and_dot_env_is_read() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("compose.yaml"),
        "services:\n  web:\n    image: registry.example/web:${TAG}\n    environment:\n      DB_PASSWORD: ${DB_PASSWORD}\n      STRIPE_SECRET: sk-inline-777\n      LEVEL: info\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join(".env"),
        "TAG=3074f46\nDB_PASSWORD=hunter2-from-dot-env\n",
    )
    .unwrap();
    let mut outputs = Vec::new();
    for args in [
        &["import", "compose.yaml"][..],
        &["import", "compose.yaml", "-o", "-"],
        &["import", "compose.yaml", "-o", "j.toml", "--format", "json"],
    ] {
        let o = gantry_in(dir.path(), dir.path(), args);
        assert_eq!(code(&o), 0, "{}", explain(&o));
        outputs.push(explain(&o));
    }
    let toml = std::fs::read_to_string(dir.path().join("gantry.toml")).unwrap();
    assert!(
        toml.contains("image = \"registry.example/web:3074f46\""),
        "{toml}"
    );
    assert!(
        toml.contains("secret_env = [\"DB_PASSWORD\", \"STRIPE_SECRET\"]"),
        "{toml}"
    );
    outputs.push(toml);
    outputs.push(std::fs::read_to_string(dir.path().join("j.toml")).unwrap());
    for o in &outputs {
        assert!(!o.contains("hunter2"), "{o}");
        assert!(!o.contains("sk-inline-777"), "{o}");
    }
}

/// A Compose specification file with most of what the mapping knows (the fixture's
/// migration, which `web` waits for with `service_completed_successfully`, is a task).
#[test]
fn the_shop_stack_imports_validates_and_plans() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture("shop/compose.yaml"),
        dir.path().join("compose.yaml"),
    )
    .unwrap();
    std::fs::write(dir.path().join("web.env"), "SENTRY_DSN=x\n").unwrap();
    std::fs::write(dir.path().join(".env"), "POSTGRES_PASSWORD=pg-777\n").unwrap();
    let o = gantry_in(dir.path(), dir.path(), &["import", "compose.yaml"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    assert!(!explain(&o).contains("pg-777"));
    let o = gantry_in(dir.path(), dir.path(), &["plan"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    assert!(
        text(&o.stdout).contains("Plan: 1 task to run, 5 to create"),
        "{}",
        explain(&o)
    );
}

/// docs/import.md's table names every service key the import reads or has a reason for.
#[test]
fn the_mapping_table_names_every_key() {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/import.md"))
        .unwrap();
    let missing: Vec<&&str> = gantry::compose::map::MAPPED
        .iter()
        .chain(gantry::compose::map::UNSUPPORTED)
        .filter(|k| !doc.contains(&format!("`{k}`")))
        .collect();
    assert!(missing.is_empty(), "not in docs/import.md: {missing:?}");
}
