//! An interrupt (the first Ctrl-C or SIGTERM) in the middle of a wave.

use super::journal::journal;
use super::*;

/// Two independent services (one wave, run side by side), each rolled one replica at a time.
fn two(tag: &str) -> String {
    let service = |name: &str| {
        format!(
            "[service.{name}]\nimage = \"{name}:{tag}\"\nreplicas = 2\nport = 8080\nlb = [\"front\"]\nhealth = {{ http = \"/healthz\", interval = \"100ms\", timeout = \"1s\", retries = 3 }}\nrollout = {{ batch = 1, drain = \"1s\" }}\n\n"
        )
    };
    format!(
        "[project]\nname = \"p\"\n\n[lb.front]\nkind = \"command\"\njoin = [\"true\"]\nleave = [\"true\"]\n\n{}{}",
        service("api"),
        service("web")
    )
}

/// Pins the interrupt: the steps in flight finish (every started step has its end in the
/// journal), no further step starts in either service of the wave, nothing is undone, what
/// was done is in the saved state, and the journal stays open (`Interrupted`, no `End`) for
/// `--resume` or `--undo`.
#[tokio::test(start_paused = true)]
async fn an_interrupt_mid_wave_finishes_the_steps_in_flight_and_stops() {
    let w = World::new();
    let v1 = w.applied(&two("v1"), empty()).await;
    // Health checks take a moment: both services are in the middle of a step when the first
    // one's health check ends and the interrupt comes.
    w.prober.always(
        &format!("{HOST_IP}:*"),
        crate::testing::FakeAnswer::Slow(200, std::time::Duration::from_millis(50)),
    );
    w.interrupt_after("health #1");
    let begun = w.rt.calls().len();
    let (outcome, state) = w.apply(&two("v2"), v1, Hold::No).await;
    let ApplyOutcome::Interrupted { after: Some(after) } = outcome else {
        panic!("{outcome:?}");
    };
    assert!(after.ends_with("health #1"), "{after}");

    let j = journal(&w);
    assert_eq!(j.last().map(String::as_str), Some("interrupted"));
    assert!(!j.iter().any(|e| e.starts_with("end") || e == "restoring"));
    let mut started: Vec<&str> = j.iter().filter_map(|e| e.strip_prefix("> ")).collect();
    let mut finished: Vec<&str> = j.iter().filter_map(|e| e.strip_prefix("< ")).collect();
    started.sort();
    finished.sort();
    assert_eq!(started, finished, "every step in flight finished");
    assert!(
        !started.iter().any(|s| s.contains("join")),
        "no step after the interrupt: {started:?}"
    );
    let unfinished = w.sink.journal_so_far();
    let unfinished = unfinished.unfinished().expect("the run stays open");
    assert_eq!(unfinished.how, "it was interrupted (Ctrl-C or SIGTERM)");

    // Nothing undone: the new replicas run beside the old ones, recorded.
    let removed = w.rt.calls()[begun..]
        .iter()
        .filter(|c| c.starts_with("remove") || c.starts_with("stop"))
        .count();
    assert_eq!(removed, 0);
    for service in ["api", "web"] {
        let new = World::replicas(&state, service)
            .into_iter()
            .filter(|r| r.0.contains("-2-"))
            .collect::<Vec<_>>();
        assert_eq!(new.len(), 1, "{service}: {new:?}");
        assert_eq!(new[0].1, ReplicaStatus::Running);
    }
    assert_eq!(w.sink.last().as_ref(), Some(&state), "saved as returned");
}

/// Pins `apply --undo` after an interrupt: the recovery undoes the run from its journal,
/// newest change first (the replicas created last removed first), leaves the prior
/// revision running and records the run as interrupted and undone.
#[tokio::test(start_paused = true)]
async fn undo_after_an_interrupt_puts_the_prior_revision_back() {
    let w = World::new();
    let v1 = w.applied(&web("v1", 2, "batch = 1"), empty()).await;
    let live = w.front.in_rotation();
    w.interrupt_after("#1 (new) replaces #1 (current) in lb.front");
    let (outcome, state) = w.apply(&web("v2", 2, "batch = 1"), v1, Hold::No).await;
    assert!(
        matches!(outcome, ApplyOutcome::Interrupted { .. }),
        "{outcome:?}"
    );
    assert_eq!(w.rt.running(), ["p-web-1-1", "p-web-1-2", "p-web-2-1"]);
    assert_ne!(w.front.in_rotation(), live);

    w.interrupt.store(false, Ordering::SeqCst);
    let begun = w.rt.calls().len();
    let journal = w.sink.journal_so_far();
    let (recovered, _notes, state) = super::super::recover::recover(
        &journal,
        state,
        super::super::recover::Mode::Undo,
        &w.env(),
    )
    .await;
    assert_eq!(
        recovered,
        super::super::recover::Recovered::Undone { revision: 1 }
    );
    let undone: Vec<String> = w.rt.calls()[begun..]
        .iter()
        .filter(|c| c.starts_with("stop") || c.starts_with("remove"))
        .cloned()
        .collect();
    assert_eq!(undone, ["stop p-web-2-1", "remove p-web-2-1"]);
    assert_eq!(w.rt.running(), ["p-web-1-1", "p-web-1-2"]);
    assert_eq!(w.front.in_rotation(), live);
    assert_eq!(state.revision, 1);
    assert_eq!(
        state.history.last().map(|r| r.outcome),
        Some(crate::state::Outcome::Interrupted)
    );
    assert_eq!(
        super::journal::journal(&w).last().map(String::as_str),
        Some("end Interrupted")
    );
}
