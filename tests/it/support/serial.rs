//! Tests that measure latency and rate under load run alone: on a 2-core machine another
//! test's containers, builds and engines are that test's noise. With one test binary every
//! test shares one process, so the rule is one lock here: each Docker test holds a shared
//! turn (taken by [`DockerTestGuard::new`](super::docker::DockerTestGuard::new)), a load test
//! takes [`alone`] first and waits for the others to finish (new ones wait behind it:
//! `std`'s lock lets no reader past a waiting writer).
#![allow(dead_code)]

use std::cell::{Cell, RefCell};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

static TURNS: RwLock<()> = RwLock::new(());

thread_local! {
    /// Whether this test's thread runs alone (its guards then take no shared turn).
    static ALONE: Cell<bool> = const { Cell::new(false) };
}

/// Held for the whole test: nothing else that uses Docker runs meanwhile.
pub struct Alone(#[allow(dead_code)] RwLockWriteGuard<'static, ()>);

impl Drop for Alone {
    fn drop(&mut self) {
        ALONE.with(|a| a.set(false));
    }
}

/// Waits until no other Docker test runs, and keeps them out until the result drops.
pub fn alone() -> Alone {
    let lock = TURNS.write().unwrap_or_else(|e| e.into_inner());
    ALONE.with(|a| a.set(true));
    Alone(lock)
}

/// A shared turn: runs beside other shared turns, never beside an [`alone`] test. Taken
/// once per thread (a second guard of the same test must not queue behind a waiting
/// [`alone`]); nothing on the thread of an `alone` test, which already excludes everyone.
pub fn shared() -> Shared {
    HELD.with(|h| {
        let mut h = h.borrow_mut();
        if h.0 == 0 && !ALONE.with(Cell::get) {
            h.1 = Some(TURNS.read().unwrap_or_else(|e| e.into_inner()));
        }
        h.0 += 1;
    });
    Shared(())
}

thread_local! {
    /// How many [`Shared`] this thread holds, and the one read guard they stand for.
    static HELD: RefCell<(usize, Option<RwLockReadGuard<'static, ()>>)> =
        const { RefCell::new((0, None)) };
}

/// One holder of this thread's shared turn; dropped on the thread that took it.
pub struct Shared(());

impl Drop for Shared {
    fn drop(&mut self) {
        HELD.with(|h| {
            let mut h = h.borrow_mut();
            h.0 = h.0.saturating_sub(1);
            if h.0 == 0 {
                h.1 = None;
            }
        });
    }
}
