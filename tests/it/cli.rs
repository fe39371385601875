//! The command-line contract scripts rely on (DESIGN.md, "Contract"), checked on the real
//! binary: exit codes, formats, plan files, the GitHub step summary, colour, completions.

use std::process::Command;

use crate::support::fixtures::*;
use crate::support::project::{gantry, run, stderr, stdout};

fn code(o: &std::process::Output) -> i32 {
    o.status.code().expect("exited normally")
}

#[test]
fn detailed_exitcode_is_2_with_changes_0_without_and_1_on_error() {
    let dir = scenario();
    let o = gantry(dir.path(), &["plan", "--detailed-exitcode"]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    // Without the flag a successful plan is 0 even with changes.
    assert_eq!(code(&gantry(dir.path(), &["plan"])), 0);

    std::fs::copy(
        fixture("plan/previous.toml"),
        dir.path().join("gantry.toml"),
    )
    .unwrap();
    let o = gantry(dir.path(), &["plan", "--detailed-exitcode"]);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("No changes."));

    std::fs::write(dir.path().join("gantry.toml"), "[project]\nname = 1\n").unwrap();
    assert_eq!(
        code(&gantry(dir.path(), &["plan", "--detailed-exitcode"])),
        1
    );
}

#[test]
fn usage_errors_exit_1_not_clap_s_2() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["plan", "--no-such-flag"][..],
        &["frobnicate"],
        &["plan", "--format", "yaml"],
        &[],
    ] {
        let o = gantry(dir.path(), args);
        assert_eq!(code(&o), 1, "{args:?}: {}", stderr(&o));
    }
    let o = gantry(dir.path(), &["--help"]);
    assert_eq!(code(&o), 0);
    assert!(stdout(&o).contains("Exit codes"));
}

#[test]
fn every_command_help_shows_an_example() {
    let dir = tempfile::tempdir().unwrap();
    for cmd in [
        &["validate"][..],
        &["plan"],
        &["graph"],
        &["completions"],
        &["state"],
        &["state", "restore-backup"],
    ] {
        let o = gantry(dir.path(), &[cmd, &["--help"]].concat());
        assert_eq!(code(&o), 0);
        assert!(
            stdout(&o).contains("Examples:\n  gantry"),
            "{cmd:?} --help has no example"
        );
    }
}

#[test]
fn missing_config_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let o = gantry(dir.path(), &["validate"]);
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains("cannot read gantry.toml"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn json_plan_is_canonical_and_versioned() {
    let dir = scenario();
    let o = gantry(dir.path(), &["plan", "--format", "json"]);
    assert_eq!(code(&o), 0);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["format_version"], 1);
    assert_eq!(v["summary"]["destroy"], 2);
    assert_eq!(v["prior"]["serial"], 17);
    let plan = gantry::plan::Plan::from_json(&stdout(&o)).unwrap();
    assert_eq!(plan.changes.len(), 8);
}

#[test]
fn plan_out_saves_lineage_serial_and_config_digest() {
    let dir = scenario();
    let o = gantry(dir.path(), &["plan", "--out", "release.plan"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains("Saved the plan to release.plan"));
    let plan = gantry::plan::Plan::from_json(
        &std::fs::read_to_string(dir.path().join("release.plan")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        plan.prior.lineage.as_deref(),
        Some("7d3f6a2e-5b1c-4e8a-9f0d-2c4b6e8a1f3d")
    );
    assert_eq!(plan.prior.serial, 17);
    assert_eq!(plan.config_sha256.len(), 64);
    // The digest moves with the config.
    let mut toml = std::fs::read_to_string(dir.path().join("gantry.toml")).unwrap();
    toml.push_str("\n# a comment\n");
    std::fs::write(dir.path().join("gantry.toml"), toml).unwrap();
    gantry(dir.path(), &["plan", "--out", "again.plan"]);
    let again = gantry::plan::Plan::from_json(
        &std::fs::read_to_string(dir.path().join("again.plan")).unwrap(),
    )
    .unwrap();
    assert_ne!(again.config_sha256, plan.config_sha256);
}

#[test]
fn github_step_summary_gets_the_markdown_appended() {
    let dir = scenario();
    let summary = dir.path().join("summary.md");
    std::fs::write(&summary, "earlier step\n").unwrap();
    let o = run(Command::new(env!("CARGO_BIN_EXE_gantry"))
        .arg("plan")
        .current_dir(dir.path())
        .env("GITHUB_STEP_SUMMARY", &summary));
    assert_eq!(code(&o), 0);
    let text = std::fs::read_to_string(&summary).unwrap();
    assert!(
        text.starts_with("earlier step\n### gantry plan for `shop`"),
        "{text}"
    );
    assert!(text.contains(":warning: Risky changes"));
}

#[test]
fn no_colour_when_piped_or_no_color_set() {
    let dir = scenario();
    // Piped (captured) output: no escape codes even without NO_COLOR.
    let o = run(Command::new(env!("CARGO_BIN_EXE_gantry"))
        .arg("plan")
        .current_dir(dir.path())
        .env_remove("NO_COLOR")
        .env_remove("CLICOLOR_FORCE"));
    assert!(!stdout(&o).contains('\u{1b}'));
    // Forced on, then NO_COLOR wins.
    let o = run(Command::new(env!("CARGO_BIN_EXE_gantry"))
        .arg("plan")
        .current_dir(dir.path())
        .env("CLICOLOR_FORCE", "1")
        .env_remove("NO_COLOR"));
    assert!(
        stdout(&o).contains('\u{1b}'),
        "CLICOLOR_FORCE should colour"
    );
    let o = run(Command::new(env!("CARGO_BIN_EXE_gantry"))
        .arg("plan")
        .current_dir(dir.path())
        .env("CLICOLOR_FORCE", "1")
        .env("NO_COLOR", "1"));
    assert!(!stdout(&o).contains('\u{1b}'));
}

#[test]
fn plan_needs_no_docker_engine() {
    // Point every Docker variable at nothing: plan must not care.
    let dir = scenario();
    let o = run(Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args(["plan", "--detailed-exitcode"])
        .current_dir(dir.path())
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock"));
    assert_eq!(code(&o), 2);
}

#[test]
fn state_dir_option_and_bad_state_files() {
    let dir = scenario();
    std::fs::rename(dir.path().join(".gantry"), dir.path().join("elsewhere")).unwrap();
    let o = gantry(
        dir.path(),
        &["plan", "--state-dir", "elsewhere", "--format", "json"],
    );
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["prior"]["serial"], 17);

    let state = dir.path().join("elsewhere/state.json");
    let full = std::fs::read_to_string(&state).unwrap();
    std::fs::write(&state, &full[..full.len() / 3]).unwrap();
    let o = gantry(dir.path(), &["plan", "--state-dir", "elsewhere"]);
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains("is not valid state JSON at line"),
        "{}",
        stderr(&o)
    );

    std::fs::write(&state, r#"{"format_version": 7}"#).unwrap();
    let o = gantry(dir.path(), &["plan", "--state-dir", "elsewhere"]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("newer gantry"), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(&state).unwrap(),
        r#"{"format_version": 7}"#,
        "state left as it was"
    );

    std::fs::write(
        &state,
        full.replace("\"project\": \"shop\"", "\"project\": \"other\""),
    )
    .unwrap();
    let o = gantry(dir.path(), &["plan", "--state-dir", "elsewhere"]);
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains("belongs to project `other`"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn graph_prints_dot_in_waves() {
    let dir = scenario();
    let o = gantry(dir.path(), &["graph"]);
    assert_eq!(code(&o), 0);
    let dot = stdout(&o);
    assert!(dot.starts_with("digraph \"shop\" {"));
    assert!(dot.contains("\"service.cache\" -> \"service.api\";"));
    assert!(dot.contains("\"service.search\" -> \"lb.front\";"));
    assert!(dot.contains("rank=same; /* wave 1 */ \"service.cache\";"));
}

#[test]
fn completions_for_each_shell() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let o = gantry(dir.path(), &["completions", shell]);
        assert_eq!(code(&o), 0, "{shell}");
        assert!(stdout(&o).contains("detailed-exitcode"), "{shell}");
    }
}

#[test]
fn secrets_never_reach_any_output() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("app.env"),
        "DB_PASSWORD=hunter2-from-file\nAPI_KEY=sk-live-0123\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("gantry.toml"),
        "[project]\nname = \"p\"\n[service.api]\nimage = \"app:1\"\nenv_file = \"app.env\"\nsecret_env = [\"SESSION_SECRET\"]\n",
    )
    .unwrap();
    let mut outputs = Vec::new();
    for format in ["text", "markdown", "json"] {
        let o = run(Command::new(env!("CARGO_BIN_EXE_gantry"))
            .args(["plan", "--format", format, "--out", "p.plan"])
            .current_dir(dir.path())
            .env("SESSION_SECRET", "s3cr3t-from-env"));
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        outputs.push(stdout(&o) + &stderr(&o));
        outputs.push(std::fs::read_to_string(dir.path().join("p.plan")).unwrap());
    }
    for out in &outputs {
        for secret in ["hunter2-from-file", "sk-live-0123", "s3cr3t-from-env"] {
            assert!(!out.contains(secret), "secret leaked: {secret}");
        }
    }
    assert!(outputs[0].contains("DB_PASSWORD=(sensitive, from app.env)"));
    assert!(outputs[0].contains("SESSION_SECRET=(sensitive, from gantry's environment)"));

    // A malformed env file is reported without echoing its content.
    std::fs::write(
        dir.path().join("app.env"),
        "DB_PASSWORD=ok\nthis line is 'not valid hunter3\n",
    )
    .unwrap();
    let o = gantry(dir.path(), &["validate"]);
    assert_eq!(code(&o), 1);
    assert!(!stderr(&o).contains("hunter3"), "{}", stderr(&o));
    assert!(stderr(&o).contains("gantry.toml:5:12"), "{}", stderr(&o));
}

#[test]
fn changed_env_file_rolls_the_service_without_showing_values() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.env"), "TOKEN=one\n").unwrap();
    std::fs::write(
        dir.path().join("gantry.toml"),
        "[project]\nname = \"p\"\n[service.api]\nimage = \"app:1\"\nenv_file = \"app.env\"\n",
    )
    .unwrap();
    let o = gantry(dir.path(), &["plan", "--format", "json"]);
    let plan = gantry::plan::Plan::from_json(&stdout(&o)).unwrap();
    // Record that plan's desired spec as the state, then change the secret value.
    let mut state = gantry::state::State::empty("p", "l".into());
    if let Some(gantry::plan::Spec::Service(spec)) = &plan.changes[0].after {
        state.services.insert(
            "api".into(),
            gantry::state::ServiceState {
                spec: (**spec).clone(),
                revision: 1,
                replicas: vec![],
                old_colour: None,
            },
        );
    }
    std::fs::create_dir(dir.path().join(".gantry")).unwrap();
    std::fs::write(dir.path().join(".gantry/state.json"), state.to_json()).unwrap();
    crate::support::fixtures::private(&dir.path().join(".gantry"));
    assert_eq!(
        code(&gantry(dir.path(), &["plan", "--detailed-exitcode"])),
        0
    );
    std::fs::write(dir.path().join("app.env"), "TOKEN=two\n").unwrap();
    let o = gantry(dir.path(), &["plan", "--detailed-exitcode"]);
    assert_eq!(code(&o), 2);
    let text = stdout(&o);
    assert!(
        text.contains("env_file.sha256 = (sensitive) -> (sensitive)"),
        "{text}"
    );
    assert!(!text.contains("two"));
}

#[test]
fn same_input_gives_byte_identical_output_across_processes() {
    let dir = scenario();
    for format in ["text", "markdown", "json"] {
        let a = gantry(dir.path(), &["plan", "--format", format]);
        let b = gantry(dir.path(), &["plan", "--format", format]);
        assert_eq!(a.stdout, b.stdout, "{format} output differs between runs");
    }
}

#[test]
fn apply_refuses_a_stale_plan_file_with_exit_6_before_touching_anything() {
    let dir = scenario();
    assert_eq!(
        code(&gantry(dir.path(), &["plan", "--out", "release.plan"])),
        0
    );
    // The config moved since the plan was saved.
    let mut toml = std::fs::read_to_string(dir.path().join("gantry.toml")).unwrap();
    toml.push_str("\n# edited after planning\n");
    std::fs::write(dir.path().join("gantry.toml"), &toml).unwrap();
    let o = gantry(dir.path(), &["apply", "release.plan"]);
    assert_eq!(code(&o), 6, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("configuration (or an env file it names) changed"),
        "{}",
        stderr(&o)
    );
    // The state moved since the plan was saved.
    assert_eq!(
        code(&gantry(dir.path(), &["plan", "--out", "release.plan"])),
        0
    );
    let state = dir.path().join(".gantry/state.json");
    let text = std::fs::read_to_string(&state)
        .unwrap()
        .replace("\"serial\": 17", "\"serial\": 18");
    std::fs::write(&state, text).unwrap();
    let o = gantry(dir.path(), &["apply", "release.plan"]);
    assert_eq!(code(&o), 6, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("serial 17, the state is now at serial 18"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn apply_without_a_terminal_refuses_without_yes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("gantry.toml"),
        "[project]\nname = \"p\"\n[service.a]\nimage = \"app:1\"\n",
    )
    .unwrap();
    let o = gantry(dir.path(), &["apply"]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("Pass --yes"), "{}", stderr(&o));
    assert!(!dir.path().join(".gantry/state.json").exists());
}

/// The plan scenario with a damaged `state.json` (its first third, as a crash of a
/// non-atomic writer would leave it) and a readable `state.json.backup` one serial behind.
/// Returns the directory and the damaged bytes.
fn scenario_with_truncated_state_and_backup() -> (tempfile::TempDir, Vec<u8>) {
    let dir = scenario();
    let state = dir.path().join(".gantry/state.json");
    let full = std::fs::read_to_string(&state).unwrap();
    std::fs::write(
        dir.path().join(".gantry/state.json.backup"),
        full.replace("\"serial\": 17", "\"serial\": 16"),
    )
    .unwrap();
    let damaged = full.as_bytes()[..full.len() / 3].to_vec();
    std::fs::write(&state, &damaged).unwrap();
    (dir, damaged)
}

/// Every file in the state directory with its bytes: "nothing changed" is this, unchanged.
fn state_dir_snapshot(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir.join(".gantry"))
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

/// Issue 5: a truncated state is refused by every command with the backup offered (its
/// serial, revision, age and the command); `state restore-backup` puts it back and keeps
/// the damaged file aside, byte for byte.
#[test]
fn truncated_state_offers_the_backup_and_restore_backup_puts_it_back() {
    let (dir, damaged) = scenario_with_truncated_state_and_backup();
    let before = state_dir_snapshot(dir.path());
    for args in [
        &["plan"][..],
        &["status"],
        &["history"],
        &["prune"],
        &["apply", "--yes"],
        &["rollback", "--yes"],
    ] {
        let o = gantry(dir.path(), args);
        assert_eq!(code(&o), 1, "{args:?}: {}", stderr(&o));
        let err = stderr(&o);
        for expected in [
            "is not valid state JSON at line",
            "Nothing was changed",
            "A backup is readable: ./.gantry/state.json.backup (serial 16, revision 6, written 20",
            "`gantry state restore-backup`",
        ] {
            assert!(err.contains(expected), "{args:?}: no {expected:?} in {err}");
        }
        assert_eq!(state_dir_snapshot(dir.path()), before, "{args:?} wrote");
    }

    // No terminal to ask on: refused, like apply.
    let o = gantry(dir.path(), &["state", "restore-backup"]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("Pass --yes"), "{}", stderr(&o));
    assert_eq!(state_dir_snapshot(dir.path()), before);

    let o = gantry(dir.path(), &["state", "restore-backup", "--yes"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("serial 16, revision 6"), "{text}");
    assert!(text.contains("gantry status"), "{text}");
    let aside: Vec<_> = std::fs::read_dir(dir.path().join(".gantry"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("state.json.broken-")
        })
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert!(
        text.contains(&aside[0].file_name().unwrap().to_string_lossy().into_owned()),
        "{text}"
    );
    assert_eq!(
        std::fs::read(&aside[0]).unwrap(),
        damaged,
        "kept byte-identical"
    );
    assert_eq!(
        std::fs::read(dir.path().join(".gantry/state.json")).unwrap(),
        std::fs::read(dir.path().join(".gantry/state.json.backup")).unwrap()
    );

    let o = gantry(dir.path(), &["plan", "--format", "json"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["prior"]["serial"], 16);

    // Now the state is readable: restoring over it needs --force.
    let o = gantry(dir.path(), &["state", "restore-backup", "--yes"]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("is readable"), "{}", stderr(&o));
    assert!(stderr(&o).contains("--force"), "{}", stderr(&o));
}

/// Issue 5: a state from a newer gantry is that gantry's record: upgrading is the fix, and
/// restoring the backup over it (which would discard that record) takes --force.
#[test]
fn state_from_a_newer_gantry_says_upgrade_and_restoring_needs_force() {
    let (dir, _) = scenario_with_truncated_state_and_backup();
    let state = dir.path().join(".gantry/state.json");
    std::fs::write(&state, r#"{"format_version": 7}"#).unwrap();
    let o = gantry(dir.path(), &["plan"]);
    assert_eq!(code(&o), 1);
    let err = stderr(&o);
    let upgrade = err.find("Upgrading gantry is the right fix").expect(&err);
    let restore = err.find("restore-backup --force").expect(&err);
    assert!(upgrade < restore, "upgrading comes first: {err}");
    assert!(err.contains("would discard"), "{err}");

    let before = state_dir_snapshot(dir.path());
    let o = gantry(dir.path(), &["state", "restore-backup", "--yes"]);
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains("upgrade gantry instead"),
        "{}",
        stderr(&o)
    );
    assert_eq!(state_dir_snapshot(dir.path()), before);

    let o = gantry(dir.path(), &["state", "restore-backup", "--yes", "--force"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(code(&gantry(dir.path(), &["plan"])), 0);
}

/// Issue 5: without a backup the message says there is none, and restore-backup changes
/// nothing.
#[test]
fn unreadable_state_without_a_backup_says_there_is_none() {
    let (dir, _) = scenario_with_truncated_state_and_backup();
    std::fs::remove_file(dir.path().join(".gantry/state.json.backup")).unwrap();
    let before = state_dir_snapshot(dir.path());
    let o = gantry(dir.path(), &["plan"]);
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains("There is no backup to restore"),
        "{}",
        stderr(&o)
    );
    let o = gantry(dir.path(), &["state", "restore-backup", "--yes"]);
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains("there is no backup to restore"),
        "{}",
        stderr(&o)
    );
    assert_eq!(state_dir_snapshot(dir.path()), before);

    // A backup that is damaged too is named as such.
    std::fs::write(dir.path().join(".gantry/state.json.backup"), "{").unwrap();
    let o = gantry(dir.path(), &["plan"]);
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains("The backup cannot be restored either"),
        "{}",
        stderr(&o)
    );
}

/// Issue 5: restore-backup takes the state lock; held by a live process, it exits 5 naming
/// the holder and changes nothing.
#[test]
fn restore_backup_exits_5_when_a_live_process_holds_the_lock() {
    let (dir, _) = scenario_with_truncated_state_and_backup();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string();
    std::fs::write(
        dir.path().join(".gantry/lock.json"),
        serde_json::json!({
            "holder": "ci@test",
            "pid": std::process::id(),
            "host": host,
            "started_at": "2026-11-23T20:00:00Z",
            "operation": "apply",
        })
        .to_string(),
    )
    .unwrap();
    let before = state_dir_snapshot(dir.path());
    let o = gantry(dir.path(), &["state", "restore-backup", "--yes"]);
    assert_eq!(code(&o), 5, "{}", stderr(&o));
    assert!(stderr(&o).contains("locked by ci@test"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("stale"), "{}", stderr(&o));
    assert_eq!(state_dir_snapshot(dir.path()), before);
}
