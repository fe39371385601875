//! Tasks through the executor: a migration runs from its service's new spec before the
//! service's rollout, its container removed afterwards; a failing task stops the apply
//! before the service is touched (restored when something changed before it, "nothing
//! changed" otherwise); it runs again only when the service's image or the task changes.

use super::*;

/// `db` (no task) and `web` with the task `migrate`, web depending on db.
fn with_task(db_tag: &str, web_tag: &str, command: &str) -> String {
    format!(
        r#"[project]
name = "p"

[service.db]
image = "db:{db_tag}"

[service.web]
image = "app:{web_tag}"
replicas = 2
port = 8080
depends_on = ["db"]
secret_env = ["DB_PASSWORD"]

[task.migrate]
service = "web"
command = [{command}]
timeout = "30s"
"#
    )
}

fn position(calls: &[String], what: &str) -> usize {
    calls
        .iter()
        .position(|c| c == what)
        .unwrap_or_else(|| panic!("no `{what}` in {calls:#?}"))
}

#[tokio::test(start_paused = true)]
async fn a_task_runs_after_what_its_service_depends_on_and_before_its_rollout() {
    let w = World::new();
    w.rt.exit_at_start("p-task-migrate-1", 0);
    w.rt.set_logs("p-task-migrate-1", &["migrated to schema 7"]);
    let state = w
        .applied(&with_task("1", "v1", "\"migrate\", \"up\""), empty())
        .await;
    let calls = w.rt.calls();
    let db = position(&calls, "start p-db-1-1");
    let task = position(&calls, "start p-task-migrate-1");
    let web = position(&calls, "start p-web-1-1");
    assert!(db < task && task < web, "{calls:#?}");
    assert!(
        calls.contains(&"remove p-task-migrate-1".to_string()),
        "{calls:#?}"
    );
    assert!(w.rt.by_name("p-task-migrate-1").is_none(), "removed");
    let spec = w.rt.spec_of("p-web-1-1").unwrap();
    assert_eq!(state.tasks["migrate"].image, "app:v1");
    let record = &state.history.last().unwrap().tasks["migrate"];
    assert_eq!(record.exit_code, Some(0));
    assert_eq!(record.last_lines, ["migrated to schema 7"]);
    assert_eq!(record.image_id.as_deref(), Some(spec.image.as_str()));

    // Same image, same task: not run again; a new image runs it again.
    let w2_calls = w.rt.calls().len();
    let state = w
        .applied(&with_task("2", "v1", "\"migrate\", \"up\""), state)
        .await;
    assert!(
        !w.rt.calls()[w2_calls..]
            .iter()
            .any(|c| c.contains("task-migrate")),
        "db's image changed, not web's: no task run"
    );
    w.rt.exit_at_start("p-task-migrate-3", 0);
    let state = w
        .applied(&with_task("2", "v2", "\"migrate\", \"up\""), state)
        .await;
    assert_eq!(state.tasks["migrate"].image, "app:v2");
    assert_eq!(state.tasks["migrate"].revision, 3);
}

#[tokio::test(start_paused = true)]
async fn the_task_container_is_a_web_container_but_not_a_replica() {
    let w = World::new();
    w.rt.exit_at_start("p-task-migrate-1", 0);
    // Kept by a failing remove (a warning, not a failure), so that its spec can be read.
    w.rt.fail(crate::testing::FakeOp::Remove, "p-task-migrate-1", "busy");
    let state = w
        .applied(&with_task("1", "v1", "\"migrate\", \"up\""), empty())
        .await;
    let task = w.rt.spec_of("p-task-migrate-1").expect("kept");
    let web = w.rt.spec_of("p-web-1-1").expect("replica");
    assert_eq!(task.image, web.image, "the same image ID");
    assert_eq!(
        task.command,
        Some(vec!["migrate".to_string(), "up".to_string()])
    );
    assert_eq!(task.labels["dev.gantry.task"], "migrate");
    assert_eq!(task.labels["dev.gantry.revision"], "1");
    for key in [
        "dev.gantry.service",
        "dev.gantry.replica",
        "dev.gantry.port",
    ] {
        assert!(!task.labels.contains_key(key), "{key}: {:?}", task.labels);
    }
    assert_eq!(task.port, None);
    assert_eq!(task.options.restart, crate::ports::Restart::No);
    assert_eq!(task.options.networks.len(), 1);
    assert_eq!(task.options.networks[0].name, "p");
    assert!(
        task.options.networks[0].aliases.is_empty(),
        "not an alias of web"
    );
    assert!(state.tasks.contains_key("migrate"));
    let notes: Vec<String> = lock(&w.reporter.events)
        .iter()
        .filter_map(|e| match e {
            Event::Note { message } => Some(message.clone()),
            _ => None,
        })
        .collect();
    assert!(
        notes.iter().any(|n| n.contains("could not be removed")),
        "{notes:#?}"
    );
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("task.migrate: exit 0 after")),
        "{notes:#?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failing_task_stops_the_apply_before_its_service_and_restores() {
    let w = World::new();
    w.rt.exit_at_start("p-task-migrate-1", 0);
    let state = w
        .applied(&with_task("1", "v1", "\"migrate\""), empty())
        .await;
    // Release 2: db rolls first, then the task fails: db is restored, web never touched.
    w.rt.exit_at_start("p-task-migrate-2", 3);
    w.rt.set_logs("p-task-migrate-2", &["error: column exists"]);
    let (outcome, after) = w
        .apply(
            &with_task("2", "v2", "\"migrate\""),
            state.clone(),
            Hold::No,
        )
        .await;
    let ApplyOutcome::RolledBack { failure } = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(failure.resource, "task.migrate");
    assert!(failure.reason.contains("exited with code 3"), "{failure}");
    assert_eq!(failure.logs, ["error: column exists"]);
    let calls = w.rt.calls();
    assert!(
        !calls.iter().any(|c| c.starts_with("create p-web-2")),
        "{calls:#?}"
    );
    assert!(w.rt.by_name("p-task-migrate-2").is_none(), "removed");
    assert_eq!(after.services["db"].spec.image, "db:1", "db restored");
    assert_eq!(
        after.tasks["migrate"].image, "app:v1",
        "the failed run is not recorded"
    );
    assert_eq!(
        after.history.last().unwrap().tasks["migrate"].exit_code,
        Some(3)
    );

    // Only the task would run (db unchanged): its failure changed nothing.
    w.rt.exit_at_start("p-task-migrate-3", 1);
    let (outcome, after) = w
        .apply(&with_task("1", "v2", "\"migrate\""), after, Hold::No)
        .await;
    assert!(
        matches!(outcome, ApplyOutcome::Unchanged { .. }),
        "{outcome:?}"
    );
    assert_eq!(after.services["web"].spec.image, "app:v1");
}

#[tokio::test(start_paused = true)]
async fn a_task_past_its_timeout_is_stopped_and_fails() {
    let w = World::new();
    // Never scripted to exit: it runs until the 30 s timeout.
    let (outcome, _) = w
        .apply(&with_task("1", "v1", "\"sleep\""), empty(), Hold::No)
        .await;
    let ApplyOutcome::RolledBack { failure } = outcome else {
        panic!("{outcome:?}");
    };
    assert!(
        failure
            .reason
            .contains("did not finish within its timeout of 30s"),
        "{failure}"
    );
    let calls = w.rt.calls();
    assert!(
        calls.contains(&"stop p-task-migrate-1".to_string()),
        "{calls:#?}"
    );
    assert!(
        calls.contains(&"remove p-task-migrate-1".to_string()),
        "{calls:#?}"
    );
}
