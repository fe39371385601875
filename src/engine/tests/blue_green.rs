//! Blue-green through the executor: the old colour kept after the switch, and the hold
//! points of `--prepare` and `--hold-at-preview` with `gantry promote` after them.

use super::journal::journal;
use super::*;

fn bg(tag: &str, scale_down_delay: &str) -> String {
    format!(
        r#"[project]
name = "p"

[lb.front]
kind = "command"
join = ["true"]
leave = ["true"]

[lb.preview]
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
preview_lb = "preview"
preview_check = ["check", "--against-preview"]
scale_down_delay = "{scale_down_delay}"
"#
    )
}

/// Pins retention around blue-green: after the switch the old colour keeps running (the
/// clean-up does not take it for strays), due for scale-down `scale_down_delay` after the
/// run's clock; the switch moved the front in ONE change; at the next release the colour
/// that is no longer live is stopped.
#[tokio::test(start_paused = true)]
async fn retention_keeps_the_old_colour() {
    let w = World::new();
    let v1 = w.applied(&bg("v1", "10m"), empty()).await;
    let sets_before = w.front.sets().len();
    let v2 = w.applied(&bg("v2", "10m"), v1).await;
    assert_eq!(
        w.rt.running(),
        ["p-web-1-1", "p-web-1-2", "p-web-2-1", "p-web-2-2"]
    );
    assert_eq!(
        w.front.in_rotation(),
        [w.address_of("p-web-2-1"), w.address_of("p-web-2-2")]
    );
    assert_eq!(w.front.sets().len(), sets_before + 1, "one switch");
    assert!(w.preview.in_rotation().is_empty());
    let colour = v2.services["web"].old_colour.clone().expect("old colour");
    assert_eq!(colour.revision, 1);
    assert_eq!(
        colour.scale_down_at.as_deref(),
        Some("2026-01-01T00:10:00Z")
    );

    w.applied(&bg("v3", "10m"), v2).await;
    assert_eq!(
        w.rt.running(),
        ["p-web-2-1", "p-web-2-2", "p-web-3-1", "p-web-3-2"],
        "revision 1 was neither live nor the old colour any more"
    );
}

/// Pins `--prepare` (hold before the preview): the new colour is up and in the preview, the
/// check has not run, the front still sends to the old colour, and the journal keeps the
/// run open with where each resource goes on; `gantry promote` then runs the check with the
/// preview addresses and switches.
#[tokio::test(start_paused = true)]
async fn prepare_holds_before_the_preview_check_and_promote_finishes() {
    let w = World::new();
    let v1 = w.applied(&bg("v1", "0s"), empty()).await;
    let live = w.front.in_rotation();
    let (outcome, held) = w.apply(&bg("v2", "0s"), v1, Hold::BeforePreview).await;
    assert_eq!(outcome, ApplyOutcome::Held { revision: 2 });
    assert!(w.commands.calls().is_empty(), "the check has not run");
    assert_eq!(w.front.in_rotation(), live);
    let new = [w.address_of("p-web-2-1"), w.address_of("p-web-2-2")];
    assert_eq!(w.preview.in_rotation(), new);
    let j = journal(&w);
    assert_eq!(
        j.last().map(String::as_str),
        Some("held {\"service.web\": 3}")
    );
    assert!(!j.iter().any(|e| e.starts_with("end")));
    assert_eq!(
        held.history.last().map(|r| r.outcome),
        Some(crate::state::Outcome::Held)
    );

    let journal = w.sink.journal_so_far();
    let image_ids = journal.held().expect("held").image_ids.clone();
    let env = BTreeMap::new();
    let inputs = ApplyInputs {
        env: &env,
        image_ids: &image_ids,
        image_digests: &BTreeMap::new(),
        origin: Origin::Apply,
        hold: Hold::No,
    };
    let (outcome, state) = super::super::promote(&journal, held, &w.env(), &inputs)
        .await
        .expect("a held run");
    assert_eq!(outcome, ApplyOutcome::Succeeded { revision: 2 });
    let calls = w.commands.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].argv, ["check", "--against-preview"]);
    assert!(
        calls[0]
            .env
            .contains(&("GANTRY_PREVIEW_ADDRESSES".to_string(), new.join(",")))
    );
    assert_eq!(w.front.in_rotation(), new);
    assert_eq!(
        w.rt.running(),
        ["p-web-2-1", "p-web-2-2"],
        "scaled down at once"
    );
    assert_eq!(state.revision, 2);
}

/// Pins `--hold-at-preview`: the check runs (against the preview), then the run holds
/// before the switch; a failing check fails the run before any user traffic moved.
#[tokio::test(start_paused = true)]
async fn hold_at_preview_runs_the_check_and_holds_before_the_switch() {
    let w = World::new();
    let v1 = w.applied(&bg("v1", "0s"), empty()).await;
    let live = w.front.in_rotation();
    let (outcome, _) = w
        .apply(&bg("v2", "0s"), v1.clone(), Hold::AfterPreview)
        .await;
    assert_eq!(outcome, ApplyOutcome::Held { revision: 2 });
    assert_eq!(w.commands.calls().len(), 1);
    assert_eq!(w.front.in_rotation(), live);
    assert_eq!(
        journal(&w).last().map(String::as_str),
        Some("held {\"service.web\": 4}")
    );

    let w = World::new();
    let v1 = w.applied(&bg("v1", "0s"), empty()).await;
    let live = w.front.in_rotation();
    w.commands.fail("check", "v1 answered", 1);
    let (outcome, _) = w.apply(&bg("v2", "0s"), v1, Hold::No).await;
    let ApplyOutcome::RolledBack { failure } = outcome else {
        panic!("{outcome:?}");
    };
    assert!(
        failure.reason.contains("no user traffic was moved"),
        "{failure}"
    );
    assert!(
        w.commands.calls().len() > 1,
        "tried again for a few seconds"
    );
    assert_eq!(w.front.in_rotation(), live);
    assert_eq!(w.rt.running(), ["p-web-1-1", "p-web-1-2"]);
}
