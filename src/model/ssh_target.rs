//! `ssh://[user@]host[:port]`: a machine reached through the system `ssh` client (a Docker
//! host, later a load balancer's machine). Parsed here, pure, so that `validate` refuses a
//! malformed one where it is written; `drivers::ssh` connects.

/// `ssh://[user@]host[:port]`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
}

impl SshTarget {
    /// Parses an `ssh://` endpoint; the error says what is wrong with it.
    pub fn parse(endpoint: &str) -> Result<SshTarget, String> {
        let rest = endpoint
            .strip_prefix("ssh://")
            .ok_or_else(|| "an SSH endpoint starts with `ssh://`".to_string())?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') {
            return Err(
                "an `ssh://` endpoint has no path: `ssh://user@host` or `ssh://user@host:2222`"
                    .into(),
            );
        }
        let (user, hostport) = match rest.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, rest),
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| "unclosed `[` in the host".to_string())?;
            match after {
                "" => (h, None),
                p => (
                    h,
                    Some(p.strip_prefix(':').ok_or("expected `:PORT` after `]`")?),
                ),
            }
        } else {
            match hostport.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        let bad = |s: &str| {
            s.is_empty() || s.starts_with('-') || s.chars().any(|c| c.is_whitespace() || c == '\'')
        };
        if bad(host) {
            return Err("the host is missing or malformed: `ssh://user@host`".into());
        }
        if let Some(u) = user
            && bad(u)
        {
            return Err("the user is malformed: `ssh://user@host`".into());
        }
        let port = match port {
            None => None,
            Some(p) => Some(
                p.parse::<u16>()
                    .ok()
                    .filter(|&p| p != 0)
                    .ok_or_else(|| format!("`{p}` is not a port"))?,
            ),
        };
        Ok(SshTarget {
            user: user.map(str::to_string),
            host: host.to_string(),
            port,
        })
    }

    /// `user@host` (and `:port`), as messages name the machine.
    pub fn display(&self) -> String {
        let mut s = match &self.user {
            Some(u) => format!("{u}@{}", self.host),
            None => self.host.clone(),
        };
        if let Some(p) = self.port {
            s.push_str(&format!(":{p}"));
        }
        s
    }
}
