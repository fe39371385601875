//! A load balancer in front of some hosts only (`[lb.NAME] hosts = [...]`): it is given the
//! members of those hosts and never sees the others, whatever the driver behind it.

use std::time::Duration;

use crate::ports::{BoxFuture, LoadBalancer, Member};

pub struct HostScoped {
    pub inner: Box<dyn LoadBalancer>,
    pub hosts: Vec<String>,
}

impl HostScoped {
    /// The members this load balancer serves (members recorded before hosts were recorded
    /// carry no host: they are kept).
    fn mine(&self, members: &[Member]) -> Vec<Member> {
        members
            .iter()
            .filter(|m| m.host.is_empty() || self.hosts.contains(&m.host))
            .cloned()
            .collect()
    }
}

impl LoadBalancer for HostScoped {
    fn preflight(&self) -> BoxFuture<'_, Result<(), String>> {
        self.inner.preflight()
    }

    fn current_members(&self) -> BoxFuture<'_, crate::state::adopt::LbMembers> {
        self.inner.current_members()
    }

    fn set_members<'a>(
        &'a self,
        previous: &'a [Member],
        members: &'a [Member],
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let (previous, members) = (self.mine(previous), self.mine(members));
            if previous == members {
                return Ok(());
            }
            self.inner.set_members(&previous, &members).await
        })
    }

    fn finish_drain<'a>(
        &'a self,
        leaving: &'a [Member],
        bound: Duration,
    ) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(async move {
            let leaving = self.mine(leaving);
            if leaving.is_empty() {
                return Ok("no member of its hosts left".into());
            }
            self.inner.finish_drain(&leaving, bound).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Records what the inner driver is given.
    struct Recorder(Arc<Mutex<Vec<Vec<String>>>>);

    impl LoadBalancer for Recorder {
        fn set_members<'a>(
            &'a self,
            _previous: &'a [Member],
            members: &'a [Member],
        ) -> BoxFuture<'a, Result<(), String>> {
            let seen: Vec<String> = members.iter().map(|m| m.address.clone()).collect();
            self.0.lock().unwrap().push(seen);
            Box::pin(async { Ok(()) })
        }

        fn finish_drain<'a>(
            &'a self,
            _leaving: &'a [Member],
            _bound: Duration,
        ) -> BoxFuture<'a, Result<String, String>> {
            Box::pin(async { Ok(String::new()) })
        }
    }

    #[tokio::test]
    async fn only_the_members_of_its_hosts_reach_the_driver() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let lb = HostScoped {
            inner: Box::new(Recorder(seen.clone())),
            hosts: vec!["a".into()],
        };
        let m = |address: &str, host: &str| Member {
            address: address.into(),
            service: "web".into(),
            replica: 1,
            host: host.into(),
        };
        lb.set_members(&[], &[m("10.0.0.1:1", "a"), m("10.0.0.2:1", "b")])
            .await
            .unwrap();
        // A change on host b only: nothing to do for this load balancer.
        lb.set_members(
            &[m("10.0.0.1:1", "a"), m("10.0.0.2:1", "b")],
            &[m("10.0.0.1:1", "a"), m("10.0.0.2:2", "b")],
        )
        .await
        .unwrap();
        assert_eq!(*seen.lock().unwrap(), vec![vec!["10.0.0.1:1".to_string()]]);
    }
}
