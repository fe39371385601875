//! Membership steps: replicas join and leave load balancers, a start-first batch's new
//! replicas replace the old ones in one change, a blue-green switch moves a host's members in
//! one change, drains wait for the leavers, and load balancers are
//! configured and forgotten. Every change goes through `change_members`, one at a time.

use super::run::Run;
use super::{StepError, list};
use crate::plan::steps::Generation;
use crate::plan::{ResourceChange, Spec, Step, StepOp};
use crate::ports::{ContainerRuntime, Member};
use crate::state::journal::{Entry, Undo};
use crate::state::{LbState, ReplicaStatus};

/// Addresses that left one load balancer and await their drain: `(lb, addresses)`.
pub(super) type Leaving = (String, Vec<Member>);

impl<R: ContainerRuntime> Run<'_, R> {
    /// Runs a load-balancer membership step: join, leave, switch, drain, configure, forget.
    pub(super) async fn membership_step(
        &self,
        service: &str,
        change: &ResourceChange,
        step: &Step,
    ) -> Result<Option<String>, StepError> {
        let host = step.host.clone().unwrap_or_default();
        match &step.op {
            StepOp::Switch { lb, replicas } => {
                let target = self.target(&step.host).map_err(StepError::new)?;
                let on_host = format!("{}:", target.address);
                let new = self
                    .addresses(service, &host, replicas, Generation::New)
                    .map_err(StepError::new)?;
                let mut old: Vec<Member> = Vec::new();
                let joined = list(&new);
                self.change_members(lb, None, |m| {
                    let (out, stay): (Vec<Member>, Vec<Member>) =
                        std::mem::take(m).into_iter().partition(|a| {
                            a.service == service
                                && a.address.starts_with(&on_host)
                                && !new.iter().any(|n| n.address == a.address)
                        });
                    old = out;
                    *m = stay;
                    m.extend(new);
                })
                .await
                .map_err(StepError::new)?;
                let left = list(&old);
                self.await_drain(service, &host, lb, old);
                Ok(Some(format!("lb.{lb}: {left} -> {joined}")))
            }
            StepOp::ReplaceInLb {
                lb,
                joining,
                leaving,
            } => {
                let new = self
                    .addresses(service, &host, joining, Generation::New)
                    .map_err(StepError::new)?;
                let old = self
                    .addresses(service, &host, leaving, Generation::Current)
                    .map_err(StepError::new)?;
                let (joined, left) = (list(&new), list(&old));
                self.change_members(lb, None, |m| {
                    m.retain(|a| !old.iter().any(|x| x.address == a.address));
                    m.extend(new);
                })
                .await
                .map_err(StepError::new)?;
                self.await_drain(service, &host, lb, old);
                Ok(Some(format!("lb.{lb}: {left} -> {joined}")))
            }
            StepOp::Drain { duration } => {
                let leaving = self
                    .leaving
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&(service.to_string(), host.clone()))
                    .unwrap_or_default();
                if leaving.is_empty() {
                    tokio::time::sleep(duration.0).await;
                    return Ok(None);
                }
                // Every load balancer drains at once; each waits at most `drain`.
                let waits = leaving.iter().map(|(lb, addresses)| async move {
                    let driver = self
                        .env
                        .lbs
                        .get(lb)
                        .ok_or_else(|| format!("no driver for lb.{lb}"))?;
                    driver
                        .finish_drain(addresses, duration.0)
                        .await
                        .map(|seen| format!("lb.{lb}: {seen}"))
                });
                let seen: Result<Vec<String>, String> = futures_util::future::join_all(waits)
                    .await
                    .into_iter()
                    .collect();
                seen.map(|s| Some(s.join("; "))).map_err(StepError::new)
            }
            StepOp::JoinLb {
                lb,
                generation,
                replicas,
            } => {
                let addresses = self
                    .addresses(service, &host, replicas, *generation)
                    .map_err(StepError::new)?;
                let joined = list(&addresses);
                self.change_members(lb, None, |m| m.extend(addresses))
                    .await
                    .map_err(StepError::new)?;
                Ok(Some(format!("lb.{lb} now sends to {joined}")))
            }
            StepOp::LeaveLb {
                lb,
                generation,
                replicas,
            } => {
                let addresses = self
                    .addresses(service, &host, replicas, *generation)
                    .map_err(StepError::new)?;
                let left = list(&addresses);
                self.change_members(lb, None, |m| {
                    m.retain(|a| !addresses.iter().any(|x| x.address == a.address))
                })
                .await
                .map_err(StepError::new)?;
                self.await_drain(service, &host, lb, addresses);
                Ok(Some(format!("lb.{lb} no longer sends to {left}")))
            }
            StepOp::Configure { members } => {
                let Some(Spec::Lb(spec)) = &change.after else {
                    return Err(StepError::new("configure without a load-balancer spec"));
                };
                let addresses = self.member_addresses(members);
                let count = addresses.len();
                self.change_members(service, Some(spec.clone()), |m| *m = addresses)
                    .await
                    .map_err(StepError::new)?;
                Ok(Some(format!("{count} member(s)")))
            }
            StepOp::Forget => {
                self.st().lbs.remove(service);
                Ok(None)
            }
            other => Err(StepError::new(format!(
                "{other:?} is not a membership step"
            ))),
        }
    }

    /// The members the state records for `lb`.
    /// Members that just left `lb` wait for the service's next `Drain` step on `host`.
    fn await_drain(&self, service: &str, host: &str, lb: &str, members: Vec<Member>) {
        self.leaving
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((service.to_string(), host.to_string()))
            .or_default()
            .push((lb.to_string(), members));
    }

    pub(super) fn members_of(&self, lb: &str) -> Vec<Member> {
        self.st()
            .lbs
            .get(lb)
            .map(|l| l.members.clone())
            .unwrap_or_default()
    }

    /// Running replicas of `service` on `host`, as load-balancer members.
    pub(super) fn addresses(
        &self,
        service: &str,
        host: &str,
        replicas: &[u32],
        generation: Generation,
    ) -> Result<Vec<Member>, String> {
        let target = self.target(&Some(host.to_string()))?;
        let mut out = Vec::new();
        for &index in replicas {
            for r in self.replicas(service, host, index, generation) {
                let port = r
                    .host_port
                    .ok_or_else(|| format!("replica #{index} publishes no port"))?;
                out.push(Member {
                    address: format!("{}:{port}", target.address),
                    service: service.to_string(),
                    replica: index,
                    host: host.to_string(),
                });
            }
        }
        Ok(out)
    }

    /// Every running replica of the given services (`service.NAME`), as members.
    pub(super) fn member_addresses(&self, services: &[String]) -> Vec<Member> {
        let state = self.st();
        let mut out = Vec::new();
        for address in services {
            let name = address.strip_prefix("service.").unwrap_or(address);
            let Some(s) = state.services.get(name) else {
                continue;
            };
            for r in s
                .replicas
                .iter()
                .filter(|r| r.status == ReplicaStatus::Running)
            {
                if let (Some(port), Some(t)) = (r.host_port, self.env.hosts.get(&r.host)) {
                    out.push(Member {
                        address: format!("{}:{port}", t.address),
                        service: name.to_string(),
                        replica: r.index,
                        host: r.host.clone(),
                    });
                }
            }
            // A Swarm service is one member: its published port (the routing mesh).
            if let Some(w) = state.swarm.get(name)
                && let (Some(port), Some(t)) = (w.published_port, self.env.hosts.get(&w.host))
            {
                out.push(Member {
                    address: format!("{}:{port}", t.address),
                    service: name.to_string(),
                    replica: 1,
                    host: w.host.clone(),
                });
            }
        }
        out
    }

    /// Changes the members of `lb` through its driver, one change at a time; records the
    /// previous members for undo. `spec` creates the LB's state entry (configure).
    pub(super) async fn change_members(
        &self,
        lb: &str,
        spec: Option<crate::model::LbSpec>,
        edit: impl FnOnce(&mut Vec<Member>),
    ) -> Result<(), String> {
        let _one_at_a_time = self.lb_lock.lock().await;
        let previous = self.members_of(lb);
        let mut next = previous.clone();
        edit(&mut next);
        next.sort();
        next.dedup_by(|a, b| a.address == b.address);
        let driver = self
            .env
            .lbs
            .get(lb)
            .ok_or_else(|| format!("no driver for lb.{lb}"))?;
        self.journal(Entry::Members {
            lb: lb.to_string(),
            previous: previous.clone(),
            next: next.clone(),
        })?;
        driver.set_members(&previous, &next).await?;
        self.push_undo(Undo::Members {
            lb: lb.to_string(),
            previous,
        });
        let mut state = self.st();
        match (state.lbs.get_mut(lb), spec) {
            (Some(entry), Some(spec)) => {
                entry.spec = spec;
                entry.members = next;
            }
            (Some(entry), None) => entry.members = next,
            (None, Some(spec)) => {
                state.lbs.insert(
                    lb.to_string(),
                    LbState {
                        spec,
                        members: next,
                    },
                );
            }
            (None, None) => {}
        }
        Ok(())
    }
}
