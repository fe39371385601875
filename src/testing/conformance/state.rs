//! The state store's contract (the executor's `StateSink`, read back as the next command
//! reads it): a saved state reads back equal, the last save wins; journal entries read back
//! equal and in the order they were written, every kind of entry the executor writes
//! included.

use std::collections::BTreeMap;

use crate::engine::StateSink;
use crate::model::ServiceSpec;
use crate::state::journal::{Entry, Undo};
use crate::state::{Member, Outcome, Replica, ReplicaStatus, ServiceState, State};

/// A [`StateSink`] that can be read back: what the next command sees.
pub trait StateStore: StateSink {
    fn read_state(&self) -> Result<Option<State>, String>;
    /// The journal's entries, oldest first.
    fn read_journal(&self) -> Result<Vec<Entry>, String>;
}

/// A state with a service, a replica and a load balancer's members, from a real model.
pub fn sample_state(serial: u64) -> State {
    let spec = sample_spec();
    let mut state = State::empty("conformance", "conformance-lineage".into());
    state.serial = serial;
    state.revision = 3;
    state.services.insert(
        "web".into(),
        ServiceState {
            spec: spec.clone(),
            revision: 3,
            replicas: vec![Replica {
                index: 1,
                host: "local".into(),
                name: "conformance-web-3-1".into(),
                container_id: "c1".into(),
                image_id: Some("sha256:abc".into()),
                revision: 3,
                host_port: Some(32768),
                status: ReplicaStatus::Running,
            }],
            old_colour: None,
        },
    );
    state
}

fn sample_model() -> crate::model::Model {
    crate::testing::model(
        "[project]\nname = \"conformance\"\n\n[service.web]\nimage = \"app:v1\"\nport = 8080\n",
    )
}

fn sample_spec() -> ServiceSpec {
    sample_model().services.remove("web").expect("web")
}

fn member(address: &str) -> Member {
    Member {
        address: address.into(),
        service: "web".into(),
        replica: 1,
        host: "local".into(),
    }
}

/// Every kind of entry a run writes after its `Begin` (which the caller's store writes as it
/// starts the journal).
pub fn sample_entries() -> Vec<Entry> {
    let at = "2026-01-01T00:00:00Z".to_string();
    vec![
        Entry::StepStarted {
            resource: "service.web".into(),
            step: "start #1 (new)".into(),
            host: Some("local".into()),
            at: at.clone(),
        },
        Entry::Intent {
            undo: Undo::Created {
                host: "local".into(),
                id: "conformance-web-4-1".into(),
                grace: std::time::Duration::from_secs(10),
            },
        },
        Entry::Intent {
            undo: Undo::Stopped {
                host: "local".into(),
                id: "c1".into(),
                spec: Box::new(sample_spec()),
                port: Some(32768),
            },
        },
        Entry::Members {
            lb: "front".into(),
            previous: vec![member("127.0.0.1:32768")],
            next: vec![member("127.0.0.1:32769")],
        },
        Entry::StepFinished {
            resource: "service.web".into(),
            step: "start #1 (new)".into(),
            at: at.clone(),
        },
        Entry::StepFailed {
            resource: "service.web".into(),
            step: "health #1".into(),
            reason: "unhealthy".into(),
            at: at.clone(),
        },
        Entry::Restoring { at: at.clone() },
        Entry::Held {
            at: at.clone(),
            plan: Box::new(crate::plan::plan(&sample_model(), None, "sha")),
            positions: BTreeMap::from([("service.web".to_string(), 4)]),
            image_ids: BTreeMap::from([("app:v1".to_string(), "sha256:abc".to_string())]),
        },
        Entry::Promoted { at: at.clone() },
        Entry::Interrupted { at: at.clone() },
        Entry::End {
            outcome: Outcome::RolledBack,
            at,
        },
    ]
}

/// `begun`: the entries the store's journal holds before the suite writes (its `Begin`).
pub fn state_store(store: &dyn StateStore, begun: &[Entry]) {
    let first = sample_state(1);
    store.save(&first).expect("save");
    assert_eq!(store.read_state().expect("read"), Some(first));
    let mut second = sample_state(2);
    second.services.clear();
    store.save(&second).expect("save again");
    assert_eq!(
        store.read_state().expect("read"),
        Some(second),
        "the last save wins"
    );

    let entries = sample_entries();
    for e in &entries {
        store.journal(e).expect("journal");
    }
    let mut expected = begun.to_vec();
    expected.extend(entries);
    assert_eq!(store.read_journal().expect("read the journal"), expected);
}

/// The contract of a [`crate::drivers::store::StateStore`], through two handles `a` and
/// `b` on the same store (two machines, or two commands one after the other).
/// `conditional`: writes are conditional on what the handle last read (a shared backend and
/// the fake; the local directory relies on its lock alone).
pub fn store(
    a: &dyn crate::drivers::store::StateStore,
    b: &dyn crate::drivers::store::StateStore,
    conditional: bool,
) {
    use crate::drivers::fs::{FsError, LockError};
    assert_eq!(a.read().expect("read"), None, "a new store has no state");
    assert!(a.read_raw().expect("raw").is_none());
    assert!(a.lock_holder().expect("holder").is_none());
    assert!(a.read_journal().expect("journal").is_none());
    assert!(a.read_backup().expect("backup").is_none());

    // Saves read back equal from the other handle; the previous one is the backup.
    let first = sample_state(1);
    a.write(&first).expect("first write");
    assert_eq!(b.read().expect("read"), Some(first.clone()));
    let mut second = sample_state(2);
    second.services.clear();
    b.write(&second).expect("second write");
    assert_eq!(a.read().expect("read"), Some(second.clone()));
    let raw = a.read_raw().expect("raw").expect("bytes");
    assert_eq!(
        crate::state::State::from_json(&String::from_utf8(raw).unwrap()).unwrap(),
        second
    );
    let backup = a.read_backup().expect("backup").expect("a backup");
    assert_eq!(
        backup.state, first,
        "the backup is the state before the last write"
    );

    // A write based on an outdated read is refused and changes nothing.
    let third = sample_state(3);
    b.write(&third).expect("b writes on what it wrote");
    if conditional {
        match a.write(&sample_state(4)) {
            Err(FsError::Conflict { .. }) => {}
            other => panic!("a write from an outdated read must be refused, got {other:?}"),
        }
        assert_eq!(b.read().expect("read"), Some(third.clone()));
    }
    assert_eq!(a.read().expect("re-read"), Some(third.clone()));
    a.write(&sample_state(5))
        .expect("a write after a fresh read");

    // One lock holder at a time, named to the other; released on drop.
    let held = a.lock("apply", "2026-01-01T00:00:00Z").expect("lock");
    match b.lock("rollback", "2026-01-01T00:00:01Z") {
        Err(LockError::Held(info, stale)) => {
            assert_eq!(info.pid, std::process::id());
            assert_eq!(info.operation, "apply");
            assert!(!stale, "a live holder's lock is not stale");
            assert!(!b.is_stale(&info));
        }
        other => panic!("expected the lock to be held, got {:?}", other.map(|_| ())),
    }
    assert_eq!(
        b.lock_holder().expect("holder").map(|i| i.operation),
        Some("apply".to_string())
    );
    drop(held);
    assert!(
        b.lock_holder().expect("holder").is_none(),
        "released on drop"
    );
    let held = b.lock("apply", "now").expect("free again");
    assert_eq!(
        a.force_unlock().expect("force-unlock").map(|i| i.pid),
        Some(std::process::id())
    );
    assert!(a.lock_holder().expect("holder").is_none());
    drop(held);
    assert!(a.force_unlock().expect("nothing to unlock").is_none());

    // The journal reads back in order from the other handle; a recovery appends to it; a
    // new run replaces it.
    let begin = |revision| Entry::Begin {
        revision,
        origin: crate::state::Origin::Apply,
        pid: 7,
        host: "conformance".into(),
        at: "2026-01-01T00:00:00Z".into(),
        prior: Box::new(sample_state(5)),
    };
    let journal = a.begin_journal(&begin(6)).expect("begin");
    let entries = sample_entries();
    for e in &entries[..5] {
        journal.append(e).expect("append");
    }
    drop(journal);
    let reopened = b.reopen_journal().expect("reopen");
    for e in &entries[5..] {
        reopened.append(e).expect("append after reopening");
    }
    let mut expected = vec![begin(6)];
    expected.extend(entries);
    assert_eq!(
        a.read_journal().expect("read").expect("journal").entries,
        expected
    );
    b.begin_journal(&begin(7)).expect("a new run");
    assert_eq!(
        a.read_journal().expect("read").expect("journal").entries,
        vec![begin(7)]
    );
}
