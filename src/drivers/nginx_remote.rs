//! nginx on other machines (`[lb.NAME] at = ["ssh://..."]`): one load balancer that is one
//! or several nginx servers, changed together or not at all. Each machine is reached through
//! one ssh master of its own (`drivers::ssh`), opened in pre-flight. A membership change
//! writes the new file on every machine (a temporary file beside it, then `mv`: atomic),
//! runs `check` on every machine, and only then `reload` on every machine. When a check
//! fails, every machine gets its previous file back before any reload; when a reload fails,
//! every machine gets its previous file back and the machines already reloaded are reloaded
//! again, and the step fails.

use tokio::sync::OnceCell;

use super::nginx::Nginx;
use super::ssh::{SshSession, SshTarget};
use crate::ports::{BoxFuture, LoadBalancer, Member};

pub struct RemoteNginx {
    /// Rendering, the file's path (absolute, on every machine), `check` and `reload`.
    pub nginx: Nginx,
    pub at: Vec<SshTarget>,
    sessions: OnceCell<Vec<SshSession>>,
}

/// `'text'` for a POSIX shell.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

fn shell_line(argv: &[String]) -> String {
    argv.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" ")
}

impl RemoteNginx {
    pub fn new(nginx: Nginx, at: Vec<SshTarget>) -> RemoteNginx {
        RemoteNginx {
            nginx,
            at,
            sessions: OnceCell::new(),
        }
    }

    async fn sessions(&self) -> Result<&Vec<SshSession>, String> {
        self.sessions
            .get_or_try_init(|| async {
                let mut out = Vec::new();
                for t in &self.at {
                    out.push(SshSession::open(t).await.map_err(|e| e.to_string())?);
                }
                Ok(out)
            })
            .await
    }

    fn file(&self) -> String {
        self.nginx.upstream_file.to_string_lossy().into_owned()
    }

    /// The file's contents on one machine (`None`: there is none).
    async fn read(&self, s: &SshSession) -> Result<Option<String>, String> {
        let f = quote(&self.file());
        let (status, out, err) = s
            .run(
                &format!("if [ -e {f} ]; then cat -- {f}; else exit 3; fi"),
                None,
            )
            .await
            .map_err(|e| e.to_string())?;
        match status {
            Some(0) => Ok(Some(out)),
            Some(3) => Ok(None),
            _ => Err(format!(
                "{}: cannot read {}: {}",
                s.machine(),
                self.file(),
                err.trim()
            )),
        }
    }

    /// Writes `content` (or removes the file, `None`) atomically on one machine.
    async fn write(&self, s: &SshSession, content: Option<&str>) -> Result<(), String> {
        let f = quote(&self.file());
        let tmp = quote(&format!("{}.gantry-tmp", self.file()));
        let (line, stdin) = match content {
            Some(c) => (
                format!("cat > {tmp} && mv -f -- {tmp} {f}"),
                Some(c.as_bytes()),
            ),
            None => (format!("rm -f -- {f}"), None),
        };
        let (status, _, err) = s.run(&line, stdin).await.map_err(|e| e.to_string())?;
        if status == Some(0) {
            Ok(())
        } else {
            Err(format!(
                "{}: cannot write {}: {}",
                s.machine(),
                self.file(),
                err.trim()
            ))
        }
    }

    async fn command(&self, s: &SshSession, argv: &[String], what: &str) -> Result<(), String> {
        let (status, out, err) = s
            .run(&shell_line(argv), None)
            .await
            .map_err(|e| e.to_string())?;
        if status == Some(0) {
            Ok(())
        } else {
            let said = format!("{}{}", err.trim(), out.trim());
            Err(format!(
                "nginx {what} `{}` on {} failed (exit {}): {said}",
                argv.join(" "),
                s.machine(),
                status.map_or("killed".to_string(), |c| c.to_string())
            ))
        }
    }

    /// Every machine's previous file back; `reloaded` machines reloaded again.
    async fn restore(
        &self,
        sessions: &[SshSession],
        previous: &[Option<String>],
        reloaded: usize,
        failure: String,
    ) -> String {
        let mut problems = Vec::new();
        for (s, p) in sessions.iter().zip(previous) {
            if let Err(e) = self.write(s, p.as_deref()).await {
                problems.push(e);
            }
        }
        for s in &sessions[..reloaded] {
            if let Err(e) = self.command(s, &self.nginx.reload, "reload").await {
                problems.push(e);
            }
        }
        if problems.is_empty() {
            format!("{failure}; the previous file was restored on every machine")
        } else {
            format!(
                "{failure}; and restoring the previous file failed: {}",
                problems.join("; ")
            )
        }
    }

    async fn set(&self, members: &[Member]) -> Result<(), String> {
        let sessions = self.sessions().await?;
        let next = self.nginx.render(members);
        let mut previous = Vec::new();
        for s in sessions {
            previous.push(self.read(s).await?);
        }
        if previous.iter().all(|p| p.as_deref() == Some(next.as_str())) {
            return Ok(());
        }
        for (i, s) in sessions.iter().enumerate() {
            if let Err(e) = self.write(s, Some(&next)).await {
                return Err(self.restore(&sessions[..i], &previous[..i], 0, e).await);
            }
        }
        for s in sessions {
            if let Err(e) = self
                .command(s, &self.nginx.check, "configuration check")
                .await
            {
                return Err(self.restore(sessions, &previous, 0, e).await);
            }
        }
        for (i, s) in sessions.iter().enumerate() {
            if let Err(e) = self.command(s, &self.nginx.reload, "reload").await {
                return Err(self.restore(sessions, &previous, i, e).await);
            }
        }
        Ok(())
    }
}

impl LoadBalancer for RemoteNginx {
    fn preflight(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move { self.sessions().await.map(|_| ()) })
    }

    /// The file on the first machine of `at` (gantry writes them all alike).
    fn current_members(&self) -> BoxFuture<'_, crate::state::adopt::LbMembers> {
        use crate::state::adopt::LbMembers;
        Box::pin(async move {
            let read = async {
                let sessions = self.sessions().await?;
                let first = sessions.first().ok_or("no machine in `at`")?;
                let text = self
                    .read(first)
                    .await?
                    .ok_or_else(|| format!("{} does not exist", self.file()))?;
                super::nginx::read_upstream(&text, &self.nginx.upstream)
            };
            match read.await {
                Ok(servers) => LbMembers::Read(servers),
                Err(e) => LbMembers::Failed(format!("reading its upstream file: {e}")),
            }
        })
    }

    fn set_members<'a>(
        &'a self,
        _previous: &'a [Member],
        members: &'a [Member],
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(self.set(members))
    }

    fn finish_drain<'a>(
        &'a self,
        leaving: &'a [Member],
        bound: std::time::Duration,
    ) -> BoxFuture<'a, Result<String, String>> {
        self.nginx.finish_drain(leaving, bound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_quoted_for_the_remote_shell() {
        assert_eq!(
            shell_line(&["nginx".into(), "-c".into(), "/etc/it's here.conf".into()]),
            r"'nginx' '-c' '/etc/it'\''s here.conf'"
        );
    }
}
