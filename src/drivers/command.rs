//! Load balancers gantry does not speak (physical LBs with an API, cloud LBs, service
//! registries): the user's own commands. `join` and `leave` run once per replica that joins or
//! leaves; `drain_check`, when given, is run until it exits 0 (the replica has no sessions
//! left), bounded by the rollout's `drain`. Arguments may use `{service}`, `{replica}`,
//! `{address}` (the host's address) and `{port}`. Exit codes and output are part of errors.

use std::time::{Duration, Instant};

use crate::ports::{BoxFuture, CommandRunner, LoadBalancer, Member};

pub struct CommandLb {
    pub join: Vec<String>,
    pub leave: Vec<String>,
    pub drain_check: Option<Vec<String>>,
    pub timeout: Duration,
}

/// Substitutes the placeholders of one argument list for one member.
pub fn expand(argv: &[String], m: &Member) -> Vec<String> {
    let (address, port) = m
        .address
        .rsplit_once(':')
        .unwrap_or((m.address.as_str(), ""));
    argv.iter()
        .map(|a| {
            a.replace("{service}", &m.service)
                .replace("{replica}", &m.replica.to_string())
                .replace("{address}", address)
                .replace("{port}", port)
        })
        .collect()
}

impl CommandLb {
    /// Joins, then leaves: a start-first batch's new replicas are in before the old ones go.
    /// A command that fails undoes what this change already did (the joined leave again, the
    /// left join again), so that a failed change is no change, as with nginx's restored file.
    async fn set(&self, previous: &[Member], members: &[Member]) -> Result<(), String> {
        let has = |list: &[Member], m: &Member| list.iter().any(|x| x.address == m.address);
        let joining = members.iter().filter(|m| !has(previous, m));
        let leaving = previous.iter().filter(|m| !has(members, m));
        let steps = joining
            .map(|m| (true, m))
            .chain(leaving.map(|m| (false, m)));
        let mut done: Vec<(bool, &Member)> = Vec::new();
        for (join, m) in steps {
            if let Err(e) = self.one(join, m).await {
                let mut undone = Vec::new();
                for (join, m) in done.into_iter().rev() {
                    if let Err(u) = self.one(!join, m).await {
                        undone.push(u);
                    }
                }
                return Err(match undone.is_empty() {
                    true => e,
                    false => format!("{e}; and undoing the change failed: {}", undone.join("; ")),
                });
            }
            done.push((join, m));
        }
        Ok(())
    }

    /// Runs the join (or leave) command for one member.
    async fn one(&self, join: bool, m: &Member) -> Result<(), String> {
        let (what, argv) = match join {
            true => ("join", expand(&self.join, m)),
            false => ("leave", expand(&self.leave, m)),
        };
        run(&argv, self.timeout).await.map_err(|e| {
            format!(
                "{what} command `{}` for {}#{}: {e}",
                argv.join(" "),
                m.service,
                m.replica
            )
        })
    }

    async fn drain(&self, leaving: &[Member], bound: Duration) -> Result<String, String> {
        let Some(check) = &self.drain_check else {
            tokio::time::sleep(bound).await;
            return Ok(format!(
                "waited {:.1}s (no drain_check)",
                bound.as_secs_f64()
            ));
        };
        let started = Instant::now();
        let mut seen = Vec::new();
        for m in leaving {
            let argv = expand(check, m);
            loop {
                match run(&argv, self.timeout).await {
                    Ok(()) => {
                        seen.push(format!(
                            "{}#{} idle after {:.1}s",
                            m.service,
                            m.replica,
                            started.elapsed().as_secs_f64()
                        ));
                        break;
                    }
                    Err(e) if started.elapsed() >= bound => {
                        seen.push(format!(
                            "{}#{} still busy after {:.1}s ({e})",
                            m.service,
                            m.replica,
                            bound.as_secs_f64()
                        ));
                        break;
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        }
        Ok(seen.join("; "))
    }
}

impl LoadBalancer for CommandLb {
    fn set_members<'a>(
        &'a self,
        previous: &'a [Member],
        members: &'a [Member],
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(self.set(previous, members))
    }

    fn finish_drain<'a>(
        &'a self,
        leaving: &'a [Member],
        bound: Duration,
    ) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(self.drain(leaving, bound))
    }
}

/// The real [`CommandRunner`]: processes on this machine, through [`run_with_env`].
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalCommands;

impl CommandRunner for LocalCommands {
    fn run<'a>(
        &'a self,
        argv: &'a [String],
        env: &'a [(String, String)],
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(run_with_env(argv, env, timeout))
    }
}

/// Runs a command with a time limit; its output and exit status are the error when it fails.
pub async fn run(argv: &[String], timeout: Duration) -> Result<(), String> {
    run_with_env(argv, &[], timeout).await
}

/// [`run`] with extra environment variables.
pub async fn run_with_env(
    argv: &[String],
    env: &[(String, String)],
    timeout: Duration,
) -> Result<(), String> {
    let Some((program, args)) = argv.split_first() else {
        return Err("empty command".into());
    };
    let child = tokio::process::Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(timeout, child).await {
        Err(_) => Err(format!("no answer within {}s", timeout.as_secs_f64())),
        Ok(Err(e)) => Err(format!("cannot run `{program}`: {e}")),
        Ok(Ok(o)) if o.status.success() => Ok(()),
        Ok(Ok(o)) => {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stderr),
                String::from_utf8_lossy(&o.stdout)
            );
            Err(format!("{} ({})", text.trim(), o.status))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_substituted() {
        let m = Member {
            address: "10.0.0.5:32769".into(),
            service: "web".into(),
            replica: 2,
            host: String::new(),
        };
        let argv: Vec<String> = ["lbctl", "add", "{service}-{replica}", "{address}:{port}"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            expand(&argv, &m),
            ["lbctl", "add", "web-2", "10.0.0.5:32769"]
        );
    }

    /// A start-first batch is one change: the new member joins, then the old one leaves; when
    /// the leave fails, the join is undone (the new member leaves again), so that the failed
    /// change is no change and the run's restore finds the load balancer as it was.
    #[tokio::test]
    async fn a_failed_leave_undoes_the_join_of_the_same_change() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("lb.log");
        let sh = |script: &str| -> Vec<String> {
            vec![
                "sh".into(),
                "-c".into(),
                format!("{script} >> {}", log.display()),
            ]
        };
        let lb = CommandLb {
            join: sh("echo join {replica}"),
            // The old member (replica 1) cannot leave.
            leave: sh("test {replica} != 1 && echo leave {replica}"),
            drain_check: None,
            timeout: Duration::from_secs(10),
        };
        let member = |replica: u32, port: u16| Member {
            address: format!("127.0.0.1:{port}"),
            service: "web".into(),
            replica,
            host: String::new(),
        };
        let (old, new) = (vec![member(1, 32768)], vec![member(2, 32769)]);
        let e = lb.set(&old, &new).await.unwrap_err();
        assert!(e.starts_with("leave command `sh -c test 1 != 1"), "{e}");
        let log = std::fs::read_to_string(&log).unwrap();
        assert_eq!(log, "join 2\nleave 2\n");
        // Without a failure: join first, then leave.
        let ok = CommandLb {
            leave: sh("echo leave {replica}"),
            ..lb
        };
        std::fs::remove_file(dir.path().join("lb.log")).unwrap();
        ok.set(&old, &new).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("lb.log")).unwrap(),
            "join 2\nleave 1\n"
        );
    }
}
