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
    async fn set(&self, previous: &[Member], members: &[Member]) -> Result<(), String> {
        let has = |list: &[Member], m: &Member| list.iter().any(|x| x.address == m.address);
        for m in members.iter().filter(|m| !has(previous, m)) {
            let argv = expand(&self.join, m);
            run(&argv, self.timeout).await.map_err(|e| {
                format!(
                    "join command `{}` for {}#{}: {e}",
                    argv.join(" "),
                    m.service,
                    m.replica
                )
            })?;
        }
        for m in previous.iter().filter(|m| !has(members, m)) {
            let argv = expand(&self.leave, m);
            run(&argv, self.timeout).await.map_err(|e| {
                format!(
                    "leave command `{}` for {}#{}: {e}",
                    argv.join(" "),
                    m.service,
                    m.replica
                )
            })?;
        }
        Ok(())
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
}
