//! The command runner's contract: exit status 0 is success; anything else is an error that
//! carries the output and the status; the environment given is the command's; a command
//! that outlives its timeout is stopped and says so; a program that does not exist is an
//! error naming it.
//!
//! The suite runs `sh` (and `sleep` through it); a fake is scripted with [`script_fake`].

use std::time::Duration;

use crate::ports::CommandRunner;
use crate::testing::FakeCommands;

fn argv(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

const FAILING: &str = "echo broken >&2; exit 3";
const ENV_CHECK: &str = "test \"$GANTRY_X\" = 1";
const SLOW: &str = "sleep 5";

pub async fn command_runner(runner: &dyn CommandRunner) {
    let t = Duration::from_secs(10);
    runner
        .run(&argv(&["sh", "-c", "exit 0"]), &[], t)
        .await
        .expect("exit 0 is success");

    let e = runner
        .run(&argv(&["sh", "-c", FAILING]), &[], t)
        .await
        .expect_err("exit 3 is a failure");
    assert!(e.contains("broken"), "the output is part of the error: {e}");
    assert!(e.contains('3'), "the exit status is part of the error: {e}");

    let env = [("GANTRY_X".to_string(), "1".to_string())];
    runner
        .run(&argv(&["sh", "-c", ENV_CHECK]), &env, t)
        .await
        .expect("the environment given reaches the command");
    runner
        .run(&argv(&["sh", "-c", ENV_CHECK]), &[], t)
        .await
        .expect_err("without it, the check fails");

    let started = tokio::time::Instant::now();
    let e = runner
        .run(&argv(&["sh", "-c", SLOW]), &[], Duration::from_millis(300))
        .await
        .expect_err("a command past its timeout fails");
    assert!(e.contains("no answer within"), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the runner did not wait for the command past its timeout"
    );

    let e = runner
        .run(&argv(&["gantry-no-such-program"]), &[], t)
        .await
        .expect_err("a missing program is an error");
    assert!(e.contains("gantry-no-such-program"), "{e}");

    assert_eq!(
        runner.run(&[], &[], t).await,
        Err("empty command".to_string())
    );
}

/// Scripts `sh` on a fake as the suite's commands behave for real.
pub fn script_fake(fake: &FakeCommands) {
    fake.on("sh", |argv, env| {
        let script = argv.get(2).map(String::as_str).unwrap_or_default();
        let ok = (Ok(()), Duration::ZERO);
        match script {
            FAILING => (Err("broken (exit status: 3)".into()), Duration::ZERO),
            ENV_CHECK if env.iter().any(|(k, v)| k == "GANTRY_X" && v == "1") => ok,
            ENV_CHECK => (Err(" (exit status: 1)".into()), Duration::ZERO),
            SLOW => (Ok(()), Duration::from_secs(5)),
            _ => ok,
        }
    });
}
