//! The old colour of a blue-green service told to go idle after a release switched away from
//! it (`idle_command`), and to resume before a switch-back gives it traffic again
//! (`resume_command`): both exec'ed in its replicas through the runtime, each journalled with
//! the other as its undo.

use super::journal::journal;
use super::*;

fn bg(tag: &str, scale_down_delay: &str, more: &str) -> String {
    format!(
        r#"[project]
name = "p"

[lb.front]
kind = "command"
join = ["true"]
leave = ["true"]

[service.web]
image = "app:{tag}"
replicas = 2
port = 8080
lb = ["front"]
health = {{ http = "/healthz", interval = "100ms", timeout = "1s", retries = 3 }}

[service.web.rollout]
strategy = "blue-green"
drain = "1s"
scale_down_delay = "{scale_down_delay}"
idle_command = ["kill", "-USR1", "1"]
resume_command = ["kill", "-USR2", "1"]
{more}"#
    )
}

/// What `gantry rollback --to` runs: the revision's plan made a rollback (a switch-back while
/// the old colour runs), journalled as a session would.
async fn rollback(w: &World, toml: &str, state: State, to: u64) -> (ApplyOutcome, State) {
    let (mut plan, image_ids) = w.plan(toml, &state);
    crate::plan::for_rollback(&mut plan, &state, to, true);
    let origin = Origin::Rollback {
        to,
        from: state.revision,
    };
    w.sink.begin(Entry::Begin {
        revision: state.next_revision(),
        origin: origin.clone(),
        pid: 1,
        host: "test".into(),
        at: crate::ports::Clock::rfc3339(&w.clock),
        prior: Box::new(state.clone()),
    });
    let env = BTreeMap::new();
    let inputs = ApplyInputs {
        env: &env,
        image_ids: &image_ids,
        image_digests: &BTreeMap::new(),
        origin,
        hold: Hold::No,
    };
    super::super::apply(&plan, state, &w.env(), &inputs).await
}

fn position(j: &[String], what: &str) -> usize {
    j.iter()
        .position(|e| e.contains(what))
        .unwrap_or_else(|| panic!("no `{what}` in the journal:\n{}", j.join("\n")))
}

fn notes(w: &World) -> Vec<String> {
    lock(&w.reporter.events)
        .iter()
        .filter_map(|e| match e {
            Event::Note { message } => Some(message.clone()),
            _ => None,
        })
        .collect()
}

/// Pins `idle_command`: exec'ed in every replica of the old colour (its own command), only
/// after the switch moved the load balancer away from it and the drain ended, journalled with
/// `resume_command` as its undo; the new colour is never touched.
#[tokio::test(start_paused = true)]
async fn the_old_colour_is_sent_idle_after_it_left_the_load_balancers() {
    let w = World::new();
    let v1 = w.applied(&bg("v1", "10m", ""), empty()).await;
    assert!(w.rt.execs().is_empty(), "a first release has no old colour");
    w.applied(&bg("v2", "10m", ""), v1).await;
    assert_eq!(
        w.rt.execs(),
        ["p-web-1-1: kill -USR1 1", "p-web-1-2: kill -USR1 1"]
    );
    let j = journal(&w);
    let switched = position(&j, "members front");
    let drained = position(&j, "< service.web: drain 1s");
    let idle = position(&j, "intent: exec kill -USR2 1 in p-web-1-1");
    assert!(switched < drained && drained < idle, "{}", j.join("\n"));
    assert_eq!(
        w.rt.running(),
        ["p-web-1-1", "p-web-1-2", "p-web-2-1", "p-web-2-2"],
        "kept for switch-back"
    );
}

/// Pins the kept replicas of an old colour scaled down at once: only those that keep running
/// are sent idle.
#[tokio::test(start_paused = true)]
async fn only_the_kept_replicas_of_a_colour_scaled_down_at_once_are_sent_idle() {
    let w = World::new();
    let v1 = w
        .applied(&bg("v1", "0s", "keep_old_replicas = 1\n"), empty())
        .await;
    w.applied(&bg("v2", "0s", "keep_old_replicas = 1\n"), v1)
        .await;
    assert_eq!(w.rt.execs(), ["p-web-1-1: kill -USR1 1"]);
}

/// Pins a failing `idle_command`: a warning in the output and in the step's detail; the
/// release stands (the new colour serves, the outcome is a success).
#[tokio::test(start_paused = true)]
async fn a_failing_idle_command_is_a_warning_and_the_release_stands() {
    let w = World::new();
    w.rt.script_exec("p-web-1-2", "USR1", 3, &["no such process"]);
    let v1 = w.applied(&bg("v1", "10m", ""), empty()).await;
    let v2 = w.applied(&bg("v2", "10m", ""), v1).await;
    assert_eq!(v2.revision, 2);
    assert_eq!(
        w.front.in_rotation(),
        [w.address_of("p-web-2-1"), w.address_of("p-web-2-2")]
    );
    let warning = notes(&w)
        .into_iter()
        .find(|n| n.starts_with("warning: service.web: idle_command `kill -USR1 1` failed in #2"))
        .unwrap_or_else(|| panic!("no warning in {:?}", notes(&w)));
    assert!(
        warning.contains("exit code 3: no such process"),
        "{warning}"
    );
    assert!(warning.contains("the release stands"), "{warning}");
    let detail = lock(&w.reporter.events)
        .iter()
        .find_map(|e| match e {
            Event::StepFinished {
                step,
                detail: Some(d),
                ..
            } if step.contains("old colour") => Some(d.clone()),
            _ => None,
        })
        .expect("the scale-down step");
    assert!(detail.contains("warning: idle_command"), "{detail}");
}

/// Pins `resume_command` on a switch-back: exec'ed in every replica of the old colour (its
/// own recorded command) before the load balancer is switched back to it, journalled with
/// `idle_command` as its undo.
#[tokio::test(start_paused = true)]
async fn a_switch_back_resumes_the_old_colour_before_it_gets_traffic() {
    let w = World::new();
    let v1 = w.applied(&bg("v1", "10m", ""), empty()).await;
    let old = [w.address_of("p-web-1-1"), w.address_of("p-web-1-2")];
    let v2 = w.applied(&bg("v2", "10m", ""), v1).await;
    let (outcome, _) = rollback(&w, &bg("v1", "10m", ""), v2, 1).await;
    assert!(
        matches!(outcome, ApplyOutcome::Succeeded { .. }),
        "{outcome:?}"
    );
    assert_eq!(
        w.rt.execs()[2..],
        ["p-web-1-1: kill -USR2 1", "p-web-1-2: kill -USR2 1"]
    );
    let j = journal(&w);
    let resumed = position(&j, "intent: exec kill -USR1 1 in p-web-1-2");
    let switched = position(&j, "members front");
    assert!(resumed < switched, "{}", j.join("\n"));
    assert_eq!(w.front.in_rotation(), old);
}

/// Pins a failing `resume_command`: the switch-back fails before any load balancer changes,
/// the replicas it resumed are sent idle again (the undo), and the new colour keeps serving.
#[tokio::test(start_paused = true)]
async fn a_failing_resume_command_fails_the_switch_back_and_the_old_colour_goes_idle_again() {
    let w = World::new();
    let v1 = w.applied(&bg("v1", "10m", ""), empty()).await;
    let v2 = w.applied(&bg("v2", "10m", ""), v1).await;
    let live = w.front.in_rotation();
    let sets = w.front.sets().len();
    w.rt.script_exec("p-web-1-2", "USR2", 1, &["cannot resume"]);
    let (outcome, state) = rollback(&w, &bg("v1", "10m", ""), v2, 1).await;
    let ApplyOutcome::RolledBack { failure } = outcome else {
        panic!("{outcome:?}");
    };
    assert!(
        failure
            .reason
            .contains("resume_command `kill -USR2 1` failed in #2"),
        "{failure}"
    );
    assert!(
        failure.reason.contains("exit code 1: cannot resume"),
        "{failure}"
    );
    assert_eq!(
        w.front.in_rotation(),
        live,
        "traffic stays on the new colour"
    );
    assert_eq!(w.front.sets().len(), sets, "no load balancer change");
    let execs = w.rt.execs();
    assert_eq!(
        execs[2..4],
        ["p-web-1-1: kill -USR2 1", "p-web-1-2: kill -USR2 1"]
    );
    let mut again = execs[4..].to_vec();
    again.sort();
    assert_eq!(
        again,
        ["p-web-1-1: kill -USR1 1", "p-web-1-2: kill -USR1 1"],
        "sent idle again"
    );
    assert_eq!(state.revision, 2);
}

/// Pins the restore of a release that failed after the old colour was sent idle (a later
/// service failed): undone newest first, the old colour is told to resume (the undo of its
/// idle) before the load balancer goes back to it (the undo of the switch, older).
#[tokio::test(start_paused = true)]
async fn a_restore_resumes_the_old_colour_it_had_sent_idle() {
    let w = World::new();
    let with_api = |tag: &str| {
        format!(
            "{}\n[service.api]\nimage = \"api:{tag}\"\ndepends_on = [\"web\"]\n",
            bg(tag, "10m", "")
        )
    };
    let v1 = w.applied(&with_api("v1"), empty()).await;
    let old = w.front.in_rotation();
    w.rt.exit_at_start("p-api-2", 1);
    let (outcome, _) = w.apply(&with_api("v2"), v1, Hold::No).await;
    assert!(
        matches!(outcome, ApplyOutcome::RolledBack { .. }),
        "{outcome:?}"
    );
    assert_eq!(
        w.rt.execs(),
        [
            "p-web-1-1: kill -USR1 1",
            "p-web-1-2: kill -USR1 1",
            "p-web-1-2: kill -USR2 1",
            "p-web-1-1: kill -USR2 1",
        ]
    );
    assert_eq!(w.front.in_rotation(), old);
}
