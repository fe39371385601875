//! An in-memory load balancer: the members in rotation, those leaving (out of rotation,
//! awaiting their drain), and every call, so that a test can count the configuration changes
//! a run made (each `set_members` is one reload or one runtime-API transaction for real).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::ports::{BoxFuture, LoadBalancer, Member};

/// One `set_members` call as the driver received it.
#[derive(Debug, Clone, PartialEq)]
pub struct SetCall {
    pub previous: Vec<Member>,
    pub members: Vec<Member>,
}

#[derive(Debug, Default)]
struct Inner {
    rotation: Vec<Member>,
    leaving: Vec<Member>,
    sets: Vec<SetCall>,
    drains: Vec<(Vec<Member>, Duration)>,
    /// `set_members` calls still to go before the scripted failure (None: no failure).
    fail_after: Option<usize>,
    fail_drain: bool,
}

/// Cloning shares the load balancer.
#[derive(Debug, Clone, Default)]
pub struct FakeLb {
    inner: Arc<Mutex<Inner>>,
}

impl FakeLb {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The addresses in rotation, sorted.
    pub fn in_rotation(&self) -> Vec<String> {
        let mut a: Vec<String> = self
            .lock()
            .rotation
            .iter()
            .map(|m| m.address.clone())
            .collect();
        a.sort();
        a
    }

    /// Addresses out of rotation whose drain has not finished.
    pub fn leaving(&self) -> Vec<String> {
        self.lock()
            .leaving
            .iter()
            .map(|m| m.address.clone())
            .collect()
    }

    /// Every `set_members` call, in order: one configuration change each.
    pub fn sets(&self) -> Vec<SetCall> {
        self.lock().sets.clone()
    }

    /// Every `finish_drain` call: the members and the bound.
    pub fn drains(&self) -> Vec<(Vec<Member>, Duration)> {
        self.lock().drains.clone()
    }

    /// The `n`-th `set_members` from now on (0: the next) fails, leaving the members as
    /// they were; later ones work again.
    pub fn fail_set_after(&self, n: usize) {
        self.lock().fail_after = Some(n);
    }

    /// `finish_drain` fails.
    pub fn fail_drain(&self) {
        self.lock().fail_drain = true;
    }
}

impl LoadBalancer for FakeLb {
    fn set_members<'a>(
        &'a self,
        previous: &'a [Member],
        members: &'a [Member],
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let mut inner = self.lock();
            match inner.fail_after {
                Some(0) => {
                    inner.fail_after = None;
                    return Err("the fake load balancer refused the change".into());
                }
                Some(n) => inner.fail_after = Some(n - 1),
                None => {}
            }
            inner.sets.push(SetCall {
                previous: previous.to_vec(),
                members: members.to_vec(),
            });
            let gone: Vec<Member> = inner
                .rotation
                .iter()
                .filter(|m| !members.iter().any(|n| n.address == m.address))
                .cloned()
                .collect();
            inner
                .leaving
                .retain(|m| !members.iter().any(|n| n.address == m.address));
            inner.leaving.extend(gone);
            inner.rotation = members.to_vec();
            Ok(())
        })
    }

    fn finish_drain<'a>(
        &'a self,
        leaving: &'a [Member],
        bound: Duration,
    ) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(async move {
            let mut inner = self.lock();
            inner.drains.push((leaving.to_vec(), bound));
            if inner.fail_drain {
                return Err("the fake load balancer could not drain".into());
            }
            inner
                .leaving
                .retain(|m| !leaving.iter().any(|l| l.address == m.address));
            Ok(format!("{} member(s) idle at once", leaving.len()))
        })
    }
}
