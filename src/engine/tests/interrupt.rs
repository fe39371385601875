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
