//! The command-line contract scripts rely on (DESIGN.md, "Contract"), checked on the real
//! binary: exit codes, formats, plan files, the GitHub step summary, colour, completions.

mod common;

use std::process::Command;

use common::*;

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
    for cmd in ["validate", "plan", "graph", "completions"] {
        let o = gantry(dir.path(), &[cmd, "--help"]);
        assert_eq!(code(&o), 0);
        assert!(
            stdout(&o).contains("Examples:\n  gantry"),
            "{cmd} --help has no example"
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
    let o = Command::new(env!("CARGO_BIN_EXE_gantry"))
        .arg("plan")
        .current_dir(dir.path())
        .env("GITHUB_STEP_SUMMARY", &summary)
        .output()
        .unwrap();
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
    let o = Command::new(env!("CARGO_BIN_EXE_gantry"))
        .arg("plan")
        .current_dir(dir.path())
        .env_remove("NO_COLOR")
        .env_remove("CLICOLOR_FORCE")
        .output()
        .unwrap();
    assert!(!stdout(&o).contains('\u{1b}'));
    // Forced on, then NO_COLOR wins.
    let o = Command::new(env!("CARGO_BIN_EXE_gantry"))
        .arg("plan")
        .current_dir(dir.path())
        .env("CLICOLOR_FORCE", "1")
        .env_remove("NO_COLOR")
        .output()
        .unwrap();
    assert!(
        stdout(&o).contains('\u{1b}'),
        "CLICOLOR_FORCE should colour"
    );
    let o = Command::new(env!("CARGO_BIN_EXE_gantry"))
        .arg("plan")
        .current_dir(dir.path())
        .env("CLICOLOR_FORCE", "1")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(!stdout(&o).contains('\u{1b}'));
}

#[test]
fn plan_needs_no_docker_engine() {
    // Point every Docker variable at nothing: plan must not care.
    let dir = scenario();
    let o = Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args(["plan", "--detailed-exitcode"])
        .current_dir(dir.path())
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
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
        let o = Command::new(env!("CARGO_BIN_EXE_gantry"))
            .args(["plan", "--format", format, "--out", "p.plan"])
            .current_dir(dir.path())
            .env("SESSION_SECRET", "s3cr3t-from-env")
            .output()
            .unwrap();
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
            },
        );
    }
    std::fs::create_dir(dir.path().join(".gantry")).unwrap();
    std::fs::write(dir.path().join(".gantry/state.json"), state.to_json()).unwrap();
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
