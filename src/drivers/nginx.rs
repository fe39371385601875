//! nginx: gantry owns one include file holding one `upstream` block. Every membership change
//! rewrites it atomically, runs the configuration check, and reloads; if the check or the
//! reload fails, the previous file is put back (and nginx, which never loaded the broken one,
//! keeps serving as before) and the step fails with nginx's own message.

use std::path::PathBuf;
use std::time::Duration;

use crate::drivers::fs::write_atomic;
use crate::ports::{BoxFuture, LoadBalancer, Member};

const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Nginx {
    pub name: String,
    pub project: String,
    pub upstream: String,
    pub upstream_file: PathBuf,
    pub check: Vec<String>,
    pub reload: Vec<String>,
    pub max_fails: Option<u32>,
    pub fail_timeout: Option<Duration>,
    pub keepalive: Option<u32>,
    pub backup: Option<String>,
    pub weights: std::collections::BTreeMap<String, u32>,
}

impl Nginx {
    /// The file's contents for these members: deterministic, and says who manages it.
    pub fn render(&self, members: &[Member]) -> String {
        let mut out = format!(
            "# Managed by gantry (project {}, lb.{}). Rewritten on every change: edits are lost.\n\
             upstream {} {{\n",
            self.project, self.name, self.upstream
        );
        let mut addresses: Vec<(&str, &str)> = members
            .iter()
            .map(|m| (m.address.as_str(), m.service.as_str()))
            .collect();
        addresses.sort();
        addresses.dedup_by(|a, b| a.0 == b.0);
        let mut params = String::new();
        if let Some(n) = self.max_fails {
            params.push_str(&format!(" max_fails={n}"));
        }
        if let Some(t) = self.fail_timeout {
            params.push_str(&format!(" fail_timeout={}s", t.as_secs().max(1)));
        }
        for (a, service) in &addresses {
            let weight = match self.weights.get(*service) {
                Some(w) if *w != 1 => format!(" weight={w}"),
                _ => String::new(),
            };
            out.push_str(&format!("    server {a}{weight}{params};\n"));
        }
        if let Some(b) = &self.backup {
            out.push_str(&format!("    server {b} backup;\n"));
        }
        if let Some(k) = self.keepalive {
            out.push_str(&format!("    keepalive {k};\n"));
        }
        if members.is_empty() {
            // nginx refuses an upstream without servers; this one answers 502 until a member joins.
            out.push_str("    server 127.0.0.1:9 down;  # no members\n");
        }
        out.push_str("}\n");
        out
    }

    async fn set(&self, members: &[Member]) -> Result<(), String> {
        let previous = std::fs::read(&self.upstream_file).ok();
        let next = self.render(members);
        if previous.as_deref() == Some(next.as_bytes()) {
            return Ok(());
        }
        write_atomic(&self.upstream_file, next.as_bytes()).map_err(|e| e.to_string())?;
        let result = match run(&self.check).await {
            Err(e) => Err(format!(
                "nginx configuration check `{}` failed: {e}",
                self.check.join(" ")
            )),
            Ok(()) => run(&self.reload)
                .await
                .map_err(|e| format!("nginx reload `{}` failed: {e}", self.reload.join(" "))),
        };
        if let Err(failure) = &result {
            let restored = match &previous {
                Some(bytes) => write_atomic(&self.upstream_file, bytes).map_err(|e| e.to_string()),
                None => std::fs::remove_file(&self.upstream_file).map_err(|e| e.to_string()),
            };
            if let Err(e) = restored {
                return Err(format!(
                    "{failure}; and restoring the previous {} failed: {e}",
                    self.upstream_file.display()
                ));
            }
        }
        result
    }
}

impl LoadBalancer for Nginx {
    fn set_members<'a>(
        &'a self,
        _previous: &'a [Member],
        members: &'a [Member],
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(self.set(members))
    }

    fn current_members(&self) -> BoxFuture<'_, crate::state::adopt::LbMembers> {
        use crate::state::adopt::LbMembers;
        Box::pin(async move {
            let read = std::fs::read_to_string(&self.upstream_file)
                .map_err(|e| e.to_string())
                .and_then(|text| read_upstream(&text, &self.upstream));
            match read {
                Ok(servers) => LbMembers::Read(servers),
                Err(e) => LbMembers::Failed(format!(
                    "reading its upstream file {}: {e}",
                    self.upstream_file.display()
                )),
            }
        })
    }

    /// nginx cannot say how many requests a server still has: the drain is the full wait.
    fn finish_drain<'a>(
        &'a self,
        _leaving: &'a [Member],
        bound: Duration,
    ) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(async move {
            tokio::time::sleep(bound).await;
            Ok(format!(
                "waited {:.1}s (nginx cannot report sessions)",
                bound.as_secs_f64()
            ))
        })
    }
}

/// The `server` lines of `upstream NAME { ... }` in an nginx file (`gantry adopt` reads who
/// nginx sends to before gantry manages the file): each address, and whether it takes
/// requests (`down` and `backup` servers do not).
pub fn read_upstream(
    text: &str,
    upstream: &str,
) -> Result<Vec<crate::state::adopt::Server>, String> {
    let mut code = String::new();
    for line in text.lines() {
        code.push_str(line.split('#').next().unwrap_or_default());
        code.push('\n');
    }
    let code = code
        .replace('{', " { ")
        .replace('}', " } ")
        .replace(';', " ; ");
    let tokens: Vec<&str> = code.split_whitespace().collect();
    let start = tokens
        .windows(3)
        .position(|w| w[0] == "upstream" && w[1] == upstream && w[2] == "{")
        .ok_or_else(|| format!("it has no `upstream {upstream} {{ ... }}` block"))?;
    let mut servers = Vec::new();
    let mut statement: Vec<&str> = Vec::new();
    for &t in &tokens[start + 3..] {
        match t {
            "}" => return Ok(servers),
            ";" => {
                if let ["server", address, params @ ..] = statement.as_slice() {
                    let address = if address.contains(':') && !address.ends_with(']') {
                        address.to_string()
                    } else {
                        format!("{address}:80")
                    };
                    servers.push(crate::state::adopt::Server {
                        address,
                        active: !params.iter().any(|p| *p == "down" || *p == "backup"),
                        left_alone: false,
                    });
                }
                statement.clear();
            }
            t => statement.push(t),
        }
    }
    Err(format!("its `upstream {upstream}` block does not end"))
}

async fn run(argv: &[String]) -> Result<(), String> {
    crate::drivers::command::run(argv, COMMAND_TIMEOUT).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_servers_of_one_upstream_block() {
        let text = "# hand-written\nupstream other { server 10.0.0.1:80; }\nupstream app {\n    server 127.0.0.1:32768 max_fails=3;  # api-1\n    server localhost:32769;\n    server 127.0.0.1:9 down;\n    server 10.0.0.2:8080 backup;\n    server example.internal;\n    keepalive 8;\n}\n";
        let servers = read_upstream(text, "app").unwrap();
        let seen: Vec<(&str, bool)> = servers
            .iter()
            .map(|s| (s.address.as_str(), s.active))
            .collect();
        assert_eq!(
            seen,
            [
                ("127.0.0.1:32768", true),
                ("localhost:32769", true),
                ("127.0.0.1:9", false),
                ("10.0.0.2:8080", false),
                ("example.internal:80", true),
            ]
        );
        assert!(
            read_upstream(text, "missing")
                .unwrap_err()
                .contains("upstream missing")
        );
        assert!(read_upstream("upstream app { server a:1;", "app").is_err());
    }

    #[test]
    fn renders_sorted_deterministic_upstream_with_a_header() {
        let n = Nginx {
            name: "front".into(),
            project: "shop".into(),
            upstream: "shop".into(),
            upstream_file: "/dev/null".into(),
            check: vec![],
            reload: vec![],
            max_fails: None,
            fail_timeout: None,
            keepalive: None,
            backup: None,
            weights: Default::default(),
        };
        let member = |a: &str| Member {
            address: a.into(),
            service: "web".into(),
            replica: 1,
            host: String::new(),
        };
        let text = n.render(&[member("127.0.0.1:32770"), member("127.0.0.1:32769")]);
        assert_eq!(
            text,
            "# Managed by gantry (project shop, lb.front). Rewritten on every change: edits are lost.\n\
             upstream shop {\n    server 127.0.0.1:32769;\n    server 127.0.0.1:32770;\n}\n"
        );
        assert!(n.render(&[]).contains("down;"));
        let tuned = Nginx {
            max_fails: Some(2),
            fail_timeout: Some(Duration::from_secs(5)),
            keepalive: Some(16),
            backup: Some("127.0.0.1:8081".into()),
            weights: [("web".to_string(), 3)].into(),
            ..n
        };
        assert_eq!(
            tuned.render(&[member("127.0.0.1:32769")]),
            "# Managed by gantry (project shop, lb.front). Rewritten on every change: edits are lost.\n\
             upstream shop {\n    server 127.0.0.1:32769 weight=3 max_fails=2 fail_timeout=5s;\n    server 127.0.0.1:8081 backup;\n    keepalive 16;\n}\n"
        );
    }
}
