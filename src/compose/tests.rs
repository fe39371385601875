//! The mapping, key by key, through the whole pure import: every written configuration
//! is run through gantry's own parser and validator here, as the op does.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use super::*;
use crate::model::EnvFileFacts;

/// Env files that exist, by the path the output names.
struct Files(BTreeSet<String>);

impl FileFacts for Files {
    fn env_file(&self, path: &str) -> Result<EnvFileFacts, String> {
        if self.0.contains(path) {
            Ok(EnvFileFacts {
                keys: vec!["FROM_FILE".into()],
                sha256: "0".repeat(64),
            })
        } else {
            Err(format!("file not found ({path})"))
        }
    }
}

struct Run {
    vars: BTreeMap<&'static str, &'static str>,
    files: Vec<&'static str>,
    same_dir: bool,
}

impl Default for Run {
    fn default() -> Self {
        Run {
            vars: [
                ("HOME", "/home/deploy"),
                ("TAG", "3074f46"),
                ("POSTGRES_PASSWORD", "pg-secret-1"),
            ]
            .into(),
            files: vec![],
            same_dir: true,
        }
    }
}

impl Run {
    fn import(&self, src: &str) -> Result<Imported, ImportError> {
        let files = Files(self.files.iter().map(|f| f.to_string()).collect());
        let vars = self.vars.clone();
        let lookup = move |n: &str| vars.get(n).map(|v| v.to_string());
        let input = Input {
            source: src,
            file: "compose.yaml",
            compose_dir: PathBuf::from("/srv/shop"),
            same_dir: self.same_dir,
            lookup: &lookup,
            files: &files,
            project_name: None,
        };
        let imported = import(&input)?;
        // The contract: what is written validates.
        let raw = crate::config::parse(&imported.toml);
        if let Err(diags) = crate::model::validate(raw, &files) {
            panic!(
                "{}\n{}",
                crate::diag::render_diagnostics("out.toml", &imported.toml, &diags, false),
                imported.toml
            );
        }
        Ok(imported)
    }
}

fn import_ok(src: &str) -> Imported {
    Run::default().import(src).unwrap()
}

/// `services:\n  NAME:\n` + the body, indented.
fn svc(body: &str) -> String {
    let mut s = String::from("services:\n  web:\n    image: registry.example/web:1.0\n");
    for line in body.lines() {
        s.push_str("    ");
        s.push_str(line);
        s.push('\n');
    }
    s
}

fn keys(i: &Imported) -> Vec<&str> {
    i.unmapped.iter().map(|u| u.key.as_str()).collect()
}

fn has_line(i: &Imported, line: &str) -> bool {
    i.toml.lines().any(|l| l.split("  #").next() == Some(line))
}

#[track_caller]
fn assert_line(i: &Imported, line: &str) {
    assert!(has_line(i, line), "no line `{line}` in:\n{}", i.toml);
}

#[test]
fn image_command_and_entrypoint() {
    let i = import_ok(&svc(
        "command: python3 -m app --name 'a b'\nentrypoint: [\"/tini\", \"--\"]",
    ));
    assert_line(&i, r#"image = "registry.example/web:1.0""#);
    assert_line(&i, r#"command = ["python3", "-m", "app", "--name", "a b"]"#);
    assert_line(&i, r#"entrypoint = ["/tini", "--"]"#);
    assert!(i.unmapped.is_empty(), "{:?}", i.unmapped);
}

#[test]
fn a_moving_tag_is_allowed_and_said() {
    let i = import_ok("services:\n  cache:\n    image: redis\n");
    assert_line(&i, "allow_mutable_tag = true");
    assert!(i.notes[0].message.contains("moving tag"), "{:?}", i.notes);
}

#[test]
fn environment_lists_and_maps() {
    let i = import_ok(&svc("environment:\n  - A=1\n  - B=x=y"));
    assert_line(&i, r#"A = "1""#);
    assert_line(&i, r#"B = "x=y""#);
    let i = import_ok(&svc("environment:\n  A: 1\n  B: \"true\""));
    assert_line(&i, r#"A = "1""#);
    assert_line(&i, r#"B = "true""#);
}

#[test]
fn values_that_are_not_strings_are_listed_not_dropped() {
    let i = import_ok(&svc(
        "environment:\n  A: [1, 2]\n  B: ok\nlabels:\n  - {x: y}\nsysctls:\n  net.x: {a: b}",
    ));
    assert_eq!(
        keys(&i),
        [
            "services.web.environment.A",
            "services.web.labels[0]",
            "services.web.sysctls.net.x"
        ]
    );
    assert_line(&i, r#"B = "ok""#);
}

#[test]
fn secret_looking_values_become_secret_env_and_are_never_written() {
    let i = import_ok(&svc(
        "environment:\n  DB_PASSWORD: hunter2\n  api_token: tok-123\n  DD_API_KEY: k-456\n  DATABASE_URL: postgres://u:${DB_PASSWORD:-pw-789}@db/x\n  PLAIN: ok\n  FROM_SHELL:",
    ));
    assert_line(
        &i,
        r#"secret_env = ["DATABASE_URL", "DB_PASSWORD", "DD_API_KEY", "FROM_SHELL", "api_token"]"#,
    );
    assert_line(&i, r#"PLAIN = "ok""#);
    for secret in ["hunter2", "tok-123", "k-456", "pw-789"] {
        assert!(!i.toml.contains(secret), "{secret} written:\n{}", i.toml);
    }
    assert!(
        i.notes
            .iter()
            .any(|n| n.message.contains("export it") && n.key.ends_with("DB_PASSWORD"))
    );
}

#[test]
fn secret_variables_outside_the_environment_are_not_resolved() {
    let run = Run {
        vars: [("DB_PASSWORD", "hunter2"), ("LEVEL", "debug")].into(),
        ..Run::default()
    };
    let i = run
        .import(&svc(
            "command: [\"app\", \"--db-password=${DB_PASSWORD}\", \"--level=${LEVEL}\"]\nlabels:\n  pw: ${DB_PASSWORD}",
        ))
        .unwrap();
    assert!(!i.toml.contains("hunter2"), "{}", i.toml);
    assert_line(
        &i,
        r#"command = ["app", "--db-password=${DB_PASSWORD}", "--level=debug"]"#,
    );
    assert_line(&i, r#"pw = "${DB_PASSWORD}""#);
    assert!(i.notes.iter().any(|n| n.key == "services.web.labels.pw"));
}

/// Secrets under names the first words miss: `DB_PASS`, `PASSWD`, credentials, and a URL
/// with a password in it, whether `.env` gave it (`DATABASE_URL=${DATABASE_URL}`, the usual
/// way) or the file holds it. None is written, in the environment or on a command line.
#[test]
fn passwords_in_urls_and_other_secret_names_are_never_written() {
    let run = Run {
        vars: [
            ("DATABASE_URL", "postgres://app:pw-db-1@db:5432/app"),
            ("DB_PASS", "pw-db-2"),
            ("LEVEL", "debug"),
        ]
        .into(),
        ..Run::default()
    };
    let i = run
        .import(&svc(
            "command: [\"app\", \"--db=${DATABASE_URL}\", \"--level=${LEVEL}\"]\nenvironment:\n  DATABASE_URL: ${DATABASE_URL}\n  REDIS: redis://:pw-redis-3@cache:6379\n  DB_PASS: ${DB_PASS}\n  SMTP_PASSWD: pw-smtp-4\n  GCP_CREDENTIALS: cred-5\n  BASIC_AUTH: u:pw-auth-6\n  HOME_URL: https://example.com:8443/x@y\n  LEVEL: ${LEVEL}",
        ))
        .unwrap();
    for secret in [
        "pw-db-1",
        "pw-db-2",
        "pw-redis-3",
        "pw-smtp-4",
        "cred-5",
        "pw-auth-6",
    ] {
        assert!(!i.toml.contains(secret), "{secret} written:\n{}", i.toml);
        let report = format!("{:?} {:?}", i.notes, i.unmapped);
        assert!(!report.contains(secret), "{secret} in the report: {report}");
    }
    assert_line(
        &i,
        r#"secret_env = ["BASIC_AUTH", "DATABASE_URL", "DB_PASS", "GCP_CREDENTIALS", "REDIS", "SMTP_PASSWD"]"#,
    );
    assert_line(&i, r#"HOME_URL = "https://example.com:8443/x@y""#);
    assert_line(&i, r#"LEVEL = "debug""#);
    assert_line(
        &i,
        r#"command = ["app", "--db=${DATABASE_URL}", "--level=debug"]"#,
    );
}

#[test]
fn env_file_is_kept_when_it_exists_and_listed_when_not() {
    let run = Run {
        files: vec!["env/web.env"],
        ..Run::default()
    };
    let src = svc("env_file:\n  - env/web.env\n  - env/extra.env");
    let i = run.import(&src).unwrap();
    assert_line(&i, r#"env_file = "env/web.env""#);
    assert_eq!(keys(&i), ["services.web.env_file[1]"]);
    assert!(i.unmapped[0].reason.contains("one `env_file` per service"));

    let i = import_ok(&svc("env_file: env/web.env"));
    assert!(!i.toml.lines().any(|l| l.starts_with("env_file")));
    assert!(
        i.unmapped[0].reason.contains("must exist"),
        "{:?}",
        i.unmapped
    );

    // Written elsewhere than beside the Compose file: the path is made absolute.
    let run = Run {
        files: vec!["/srv/shop/env/web.env"],
        same_dir: false,
        ..Run::default()
    };
    let i = run.import(&svc("env_file: ./env/web.env")).unwrap();
    assert_line(&i, r#"env_file = "/srv/shop/env/web.env""#);
}

#[test]
fn ports_of_one_replica_are_published_as_they_are() {
    let i = import_ok(&svc(
        "ports:\n  - 8125:8125/udp\n  - 127.0.0.1:8126:8126\n  - \"[::1]:9000:9000\"",
    ));
    assert_line(
        &i,
        r#"publish = ["8125:8125/udp", "127.0.0.1:8126:8126", "[::1]:9000:9000"]"#,
    );
    assert!(i.unmapped.is_empty(), "{:?}", i.unmapped);
}

#[test]
fn ports_of_several_replicas_become_the_probed_port() {
    let i = import_ok(&svc(
        "deploy:\n  replicas: 3\nports:\n  - 8080:3308\n  - 9090:9090",
    ));
    assert_line(&i, "replicas = 3");
    assert_line(&i, "port = 3308");
    assert_eq!(keys(&i), ["services.web.ports[0]", "services.web.ports[1]"]);
    assert!(i.unmapped[0].reason.contains("load balancer"));
    assert!(i.unmapped[1].reason.contains("one replica per host"));

    // No host port: the engine's choice, as gantry does anyway.
    let i = import_ok(&svc("scale: 2\nports:\n  - \"3000\""));
    assert_line(&i, "port = 3000");
    assert!(i.unmapped.is_empty(), "{:?}", i.unmapped);

    // gantry publishes `port` on its host's address, 127.0.0.1 for the local engine.
    let i = import_ok(&svc("scale: 2\nports:\n  - \"127.0.0.1::3000\""));
    assert!(i.unmapped.is_empty() && i.notes.is_empty(), "{:?}", i.notes);
    let i = import_ok(&svc("scale: 2\nports:\n  - \"10.0.0.5::3000\""));
    assert!(i.unmapped[0].reason.contains("address = \"10.0.0.5\""));
    let i = import_ok(&svc("scale: 2\nports:\n  - \"3000\""));
    assert!(
        i.notes[0].message.contains("every address"),
        "{:?}",
        i.notes
    );

    // A range large enough for the replicas and the surge: host_ports.
    let i = import_ok(&svc(
        "deploy:\n  replicas: 2\nports:\n  - target: 80\n    published: 18080-18083\n    protocol: tcp",
    ));
    assert_line(&i, "port = 80");
    assert_line(&i, r#"host_ports = "18080-18083""#);
}

#[test]
fn volumes_named_bind_and_tmpfs() {
    let i = import_ok(
        "services:\n  db:\n    image: postgres:16.4\n    volumes:\n      - pgdata:/var/lib/postgresql/data\n      - ./init:/docker-entrypoint-initdb.d:ro\n      - ~/certs:/certs:ro,z\n      - /scratch\n      - type: tmpfs\n        target: /run\n        tmpfs:\n          size: 64m\nvolumes:\n  pgdata:\n",
    );
    assert_line(
        &i,
        r#"volumes = ["pgdata:/var/lib/postgresql/data", "/srv/shop/init:/docker-entrypoint-initdb.d:ro", "/home/deploy/certs:/certs:ro"]"#,
    );
    assert_line(&i, r#"tmpfs = ["/run:size=64m"]"#);

    assert_eq!(
        keys(&i),
        ["services.db.volumes[2]", "services.db.volumes[3]"],
        "{:?}",
        i.unmapped
    );
    // `tmpfs:` and a tmpfs in `volumes:` make one list.
    let j = import_ok(&svc(
        "tmpfs: /tmp\nvolumes:\n  - type: tmpfs\n    target: /run",
    ));
    assert_line(&j, r#"tmpfs = ["/tmp", "/run"]"#);
}

#[test]
fn an_external_volume_is_not_replaced_silently() {
    let i = import_ok(
        "services:\n  db:\n    image: postgres:16.4\n    volumes:\n      - data:/d\nvolumes:\n  data:\n    external: true\n",
    );
    assert!(!i.toml.contains("volumes ="));
    assert_eq!(
        keys(&i),
        ["services.db.volumes[0]", "volumes.data.external"],
        "{:?}",
        i.unmapped
    );
}

#[test]
fn networks_external_are_joined_and_others_are_listed() {
    let i = import_ok(
        "services:\n  web:\n    image: registry.example/web:1.0\n    networks:\n      - default\n      - shared\n      - back\nnetworks:\n  shared:\n    external: true\n    name: shared-logging\n  back:\n    driver: bridge\n",
    );
    assert_line(&i, r#"networks = ["shared-logging"]"#);
    assert_eq!(keys(&i), ["services.web.networks.back", "networks.back"]);
    let i = import_ok(&svc("network_mode: host"));
    assert_line(&i, r#"network_mode = "host""#);
}

#[test]
fn restart_and_restart_policy() {
    for (yaml, want) in [
        ("restart: unless-stopped", "unless-stopped"),
        ("restart: \"no\"", "no"),
        ("restart: on-failure:3", "on-failure:3"),
        ("deploy:\n  restart_policy:\n    condition: any", "always"),
        ("deploy:\n  restart_policy:\n    condition: none", "no"),
        (
            "deploy:\n  restart_policy:\n    condition: on-failure\n    max_attempts: 5",
            "on-failure:5",
        ),
        ("deploy:\n  restart_policy: {}", "always"),
    ] {
        let i = import_ok(&svc(yaml));
        assert_line(&i, &format!("restart = \"{want}\""));
        assert!(i.unmapped.is_empty(), "{yaml}: {:?}", i.unmapped);
    }
    let i = import_ok(&svc(
        "restart: always\ndeploy:\n  restart_policy:\n    condition: on-failure\n    delay: 5s",
    ));
    assert_line(&i, r#"restart = "on-failure""#);
    assert_eq!(
        keys(&i),
        [
            "services.web.restart",
            "services.web.deploy.restart_policy.delay"
        ]
    );
}

#[test]
fn replicas_resources_and_modes() {
    let i = import_ok(&svc(
        "deploy:\n  replicas: 2\n  resources:\n    limits:\n      cpus: \"0.5\"\n      memory: 512M\n      pids: 100\n    reservations:\n      memory: 256M",
    ));
    assert_line(&i, "replicas = 2");
    assert_line(&i, r#"resources = { cpus = 0.5, memory = "512M" }"#);
    assert_eq!(
        keys(&i),
        [
            "services.web.deploy.resources.limits.pids",
            "services.web.deploy.resources.reservations.memory"
        ]
    );
    let i = import_ok(&svc("mem_limit: 1g\ncpus: 1.5"));
    assert_line(&i, r#"resources = { cpus = 1.5, memory = "1g" }"#);
    let i = import_ok(&svc("deploy:\n  mode: global"));
    assert_line(&i, "replicas = 1");
    assert!(i.notes.iter().any(|n| n.message.contains("every host")));
}

#[test]
fn update_config_becomes_the_rollout() {
    let i = import_ok(&svc(
        "deploy:\n  replicas: 4\n  update_config:\n    parallelism: 2\n    delay: 10s\n    order: start-first\n    failure_action: pause\n    monitor: 30s\n    max_failure_ratio: 0.1",
    ));
    assert_line(&i, "batch = 2");
    assert_line(&i, r#"order = "start-first""#);
    assert_line(&i, r#"soak = "10s""#);
    assert_line(&i, r#"on_failure = "pause""#);
    assert_eq!(
        keys(&i),
        [
            "services.web.deploy.update_config.monitor",
            "services.web.deploy.update_config.max_failure_ratio"
        ]
    );
    // parallelism 0 is every replica at once; `continue` has no counterpart.
    let i = import_ok(&svc(
        "deploy:\n  replicas: 3\n  update_config:\n    parallelism: 0\n    failure_action: continue",
    ));
    assert_line(&i, "batch = 3");
    assert_eq!(
        keys(&i),
        ["services.web.deploy.update_config.failure_action"]
    );
}

#[test]
fn start_first_is_not_written_where_gantry_refuses_it() {
    let i = import_ok(&svc(
        "volumes:\n  - data:/data\ndeploy:\n  update_config:\n    order: start-first",
    ));
    assert!(!i.toml.contains("order ="), "{}", i.toml);
    assert_eq!(keys(&i), ["services.web.deploy.update_config.order"]);
    assert!(i.unmapped[0].reason.contains("read-write named volume"));
}

#[test]
fn healthchecks() {
    let i = import_ok(&svc(
        "healthcheck:\n  test: [\"CMD\", \"curl\", \"-f\", \"http://localhost/\"]\n  interval: 1m30s\n  timeout: 5s\n  retries: 3\n  start_period: 10s\n  start_interval: 1s",
    ));
    assert_line(&i, r#"command = ["curl", "-f", "http://localhost/"]"#);
    assert_line(&i, r#"interval = "1m 30s""#);
    assert_line(&i, "retries = 3");
    assert_eq!(keys(&i), ["services.web.healthcheck.start_interval"]);
    let i = import_ok(&svc(
        "healthcheck:\n  test: [\"CMD-SHELL\", \"pg_isready -U app || exit 1\"]",
    ));
    assert_line(
        &i,
        r#"command = ["/bin/sh", "-c", "pg_isready -U app || exit 1"]"#,
    );
    let i = import_ok(&svc("healthcheck:\n  test: redis-cli ping"));
    assert_line(&i, r#"command = ["/bin/sh", "-c", "redis-cli ping"]"#);
    let i = import_ok(&svc("healthcheck:\n  disable: true"));
    assert_eq!(keys(&i), ["services.web.healthcheck"]);
}

#[test]
fn logging_json_file_options() {
    let i = import_ok(&svc(
        "logging:\n  driver: json-file\n  options:\n    max-size: 100m\n    max-file: \"10\"\n    compress: \"true\"",
    ));
    assert_line(&i, r#"log = { max_files = 10, max_size = "100m" }"#);
    assert_eq!(keys(&i), ["services.web.logging.options.compress"]);
    let i = import_ok(&svc("logging:\n  driver: syslog\n  options:\n    tag: web"));
    assert!(!i.toml.contains("log ="));
    assert_eq!(
        keys(&i),
        [
            "services.web.logging.driver",
            "services.web.logging.options"
        ]
    );
}

#[test]
fn labels_and_depends_on() {
    let i = import_ok(
        "services:\n  web:\n    image: registry.example/web:1.0\n    labels:\n      - traefik.enable=true\n    depends_on:\n      db:\n        condition: service_healthy\n      migrate:\n        condition: service_completed_successfully\n  db:\n    image: postgres:16.4\n  migrate:\n    image: registry.example/web:1.0\n    command: [\"migrate\"]\n",
    );
    assert_line(&i, r#""traefik.enable" = "true""#);
    assert_line(&i, r#"depends_on = ["db"]"#);
    assert!(i.unmapped.is_empty(), "{:?}", i.unmapped);
    assert_eq!(i.services, ["web", "db"]);
}

/// A service others wait for with `service_completed_successfully` runs once: with the
/// image of a service that waits for it, it is that service's `[task.NAME]`.
#[test]
fn a_run_to_completion_service_becomes_a_task() {
    let src = "services:\n  web:\n    image: registry.example/web:1.0\n    depends_on:\n      migrate:\n        condition: service_completed_successfully\n  migrate:\n    image: registry.example/web:1.0\n    command: python3 manage.py migrate\n    environment:\n      A: b\n";
    let i = import_ok(src);
    assert!(i.toml.contains("[task.migrate]"), "{}", i.toml);
    assert_line(&i, r#"service = "web""#);
    assert_line(&i, r#"command = ["python3", "manage.py", "migrate"]"#);
    assert_eq!(keys(&i), ["services.migrate.environment"]);
    assert_eq!(i.services, ["web"]);

    // Another image: it stays a service, and the wait is listed.
    let i = import_ok(&src.replace(
        "image: registry.example/web:1.0\n    command",
        "image: registry.example/tools:2.0\n    command",
    ));
    assert!(!i.toml.contains("\n[task."), "{}", i.toml);
    assert_eq!(keys(&i), ["services.web.depends_on.migrate.condition"]);
}

#[test]
fn container_options() {
    let i = import_ok(&svc(
        "user: \"1000:1000\"\nworking_dir: /app\nread_only: true\ninit: true\nprivileged: false\npid: host\nshm_size: 256m\ncap_add: [NET_ADMIN]\ncap_drop: [ALL]\nsysctls:\n  net.core.somaxconn: 1024\nulimits:\n  nproc: 65535\n  nofile:\n    soft: 20000\n    hard: 40000\nextra_hosts:\n  - \"somehost=162.242.195.82\"\ndevices:\n  - /dev/fuse\ntmpfs: /tmp",
    ));
    for line in [
        r#"user = "1000:1000""#,
        r#"working_dir = "/app""#,
        "read_only = true",
        "init = true",
        r#"pid = "host""#,
        r#"shm_size = "256m""#,
        r#"cap_add = ["NET_ADMIN"]"#,
        r#"cap_drop = ["ALL"]"#,
        r#"sysctls = { "net.core.somaxconn" = 1024 }"#,
        "ulimits = { nofile = { soft = 20000, hard = 40000 }, nproc = 65535 }",
        r#"extra_hosts = ["somehost:162.242.195.82"]"#,
        r#"devices = ["/dev/fuse"]"#,
        r#"tmpfs = ["/tmp"]"#,
    ] {
        assert_line(&i, line);
    }
    assert!(!i.toml.contains("privileged"));
    assert!(i.unmapped.is_empty(), "{:?}", i.unmapped);
}

#[test]
fn every_unsupported_key_has_a_reason_and_is_not_also_mapped() {
    for key in map::UNSUPPORTED {
        assert!(map::unsupported(key).is_some(), "{key}");
        assert!(!map::MAPPED.contains(key), "{key}");
    }
}

#[test]
fn what_gantry_refuses_is_taken_out_with_its_reason() {
    let i = import_ok(&svc("cap_add: [NOT_A_CAPABILITY]"));
    assert!(!i.toml.contains("cap_add ="), "{}", i.toml);
    assert_eq!(keys(&i), ["services.web.cap_add"]);
    assert!(i.unmapped[0].reason.starts_with("gantry refuses it: "));
    // Where, to the column, as every other unmapped item says it.
    assert_eq!((i.unmapped[0].line, i.unmapped[0].column), (4, 14));
}

#[test]
fn keys_without_a_counterpart_are_listed_with_a_reason() {
    let i = import_ok(
        "version: \"2.4\"\nx-common: &c\n  init: true\nservices:\n  web:\n    <<: *c\n    image: registry.example/web:1.0\n    container_name: web1\n    build: .\n    expose: [\"80\"]\n    stop_signal: SIGQUIT\n    wat: 1\n  builder:\n    build: ./b\nsecrets:\n  s:\n    file: ./s.txt\n",
    );
    assert_line(&i, "init = true");
    assert_eq!(
        keys(&i),
        [
            "services.web.container_name",
            "services.web.build",
            "services.web.expose",
            "services.web.stop_signal",
            "services.web.wat",
            "services.builder",
            "secrets",
        ]
    );
    assert!(i.unmapped.iter().all(|u| !u.reason.is_empty()));
    assert_eq!(i.services, ["web"]);
}

#[test]
fn interpolation_in_values() {
    let i = import_ok(
        "services:\n  web:\n    image: registry.example/web:${TAG}\n    environment:\n      LEVEL: ${LEVEL:-info}\n      HOST: ${DB_HOST}\n      PRICE: $$5\n",
    );
    assert_line(&i, r#"image = "registry.example/web:3074f46""#);
    assert_line(&i, r#"LEVEL = "info""#);
    assert_line(&i, r#"HOST = "${DB_HOST}""#);
    assert_line(&i, r#"PRICE = "$5""#);
    assert!(
        i.notes
            .iter()
            .any(|n| n.key == "services.web.environment.HOST" && n.message.contains("DB_HOST"))
    );
    let e = Run::default()
        .import("services:\n  web:\n    image: ${IMAGE:?set IMAGE}\n")
        .unwrap_err();
    assert_eq!((e.line, e.column), (3, 12));
    assert!(e.message.contains("set IMAGE"), "{e:?}");
}

#[test]
fn names_become_gantry_names_and_references_follow() {
    let i = import_ok(
        "name: My_Shop\nservices:\n  api_v2:\n    image: registry.example/api:1.0\n    depends_on: [Cache.Main]\n  Cache.Main:\n    image: redis:7.2\n",
    );
    assert_line(&i, r#"name = "my-shop""#);
    assert!(i.toml.contains("[service.api-v2]"));
    assert_line(&i, r#"depends_on = ["cache-main"]"#);
    assert_eq!(i.services, ["api-v2", "cache-main"]);
    assert!(i.notes.iter().any(|n| n.message.contains("named volumes")));
}

#[test]
fn bad_input_is_an_error_with_line_and_column_never_a_panic() {
    for src in [
        "services: [",
        "- a\n- b\n",
        "services:\n  web: 3\n",
        "name: x\n",
        "services:\n  web:\n    image: a\n    ports: 8080\n",
        "services:\n  web:\n    image: \"****:****\"\n    deploy: 1\n    healthcheck: x\n",
    ] {
        let r = Run::default().import(src);
        if let Err(e) = r {
            assert!(e.line >= 1 && !e.message.is_empty(), "{src}: {e:?}");
        }
    }
}

/// Every file made by cutting one line out of the realistic ones, and every prefix of
/// them: an import or an error with a place, never a panic, and what is written validates.
#[test]
fn damaged_files_never_panic() {
    for src in [
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/import/shop/compose.yaml"
        )),
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/import/seed-000/docker-compose.yaml"
        )),
    ] {
        let lines: Vec<&str> = src.lines().collect();
        for i in 0..lines.len() {
            let mut cut = lines.clone();
            cut.remove(i);
            let _ = Run::default().import(&cut.join("\n"));
            let _ = Run::default().import(&lines[..i].join("\n"));
            // Indentation broken at one line.
            let mut shifted = lines.clone();
            let moved = format!(" {}", lines[i]);
            shifted[i] = &moved;
            let _ = Run::default().import(&shifted.join("\n"));
        }
    }
}

#[test]
fn the_same_file_gives_the_same_bytes() {
    let src = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/import/shop/compose.yaml"
    ))
    .to_string();
    let a = import_ok(&src);
    let b = import_ok(&src);
    assert_eq!(a.toml, b.toml);
}

/// Seed 000's stack file (the masked values quoted, see the fixture's README).
#[test]
fn seed_000_snapshot() {
    let src = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/import/seed-000/docker-compose.yaml"
    ))
    .to_string();
    let run = Run {
        files: vec!["/home/deploy/env/.env", "/home/deploy/env/.env.datadog"],
        ..Run::default()
    };
    let i = run.import(&src).unwrap();
    insta::assert_snapshot!("seed_000", i.toml);
}

/// A Compose specification file with most of what the mapping knows.
#[test]
fn shop_snapshot() {
    let src = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/import/shop/compose.yaml"
    ))
    .to_string();
    let run = Run {
        files: vec!["web.env"],
        ..Run::default()
    };
    let i = run.import(&src).unwrap();
    assert!(!i.toml.contains("pg-secret-1"), "a secret was written");
    let report: Vec<String> = i
        .unmapped
        .iter()
        .map(|u| format!("{}  {}: {}", u.line, u.key, u.reason))
        .chain(
            i.notes
                .iter()
                .map(|n| format!("{}  {} (note): {}", n.line, n.key, n.message)),
        )
        .collect();
    insta::assert_snapshot!("shop", format!("{}\n----\n{}\n", i.toml, report.join("\n")));
}
