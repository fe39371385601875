//! The `[[host]]` entries: the Docker engines an apply reaches, and how.

use std::collections::BTreeMap;
use std::ops::Range;

use super::{NAME_HELP, Validator, valid_name};
use crate::diag::Diagnostic;
use crate::model::{DEFAULT_DOCKER, Host, LOCAL_HOST, Tls};

impl Validator<'_> {
    pub(super) fn hosts(&mut self, hosts: &[crate::config::TomlHost]) -> Vec<Host> {
        if hosts.is_empty() {
            return vec![Host {
                name: LOCAL_HOST.into(),
                docker: DEFAULT_DOCKER.into(),
                address: "127.0.0.1".into(),
                tls: None,
            }];
        }
        let mut seen: BTreeMap<String, Range<usize>> = BTreeMap::new();
        let mut out = Vec::new();
        for h in hosts {
            let name = h.name.get_ref().clone();
            if !valid_name(&name) {
                self.err(
                    Diagnostic::at(format!("invalid host name `{name}`"), h.name.span())
                        .help(NAME_HELP),
                );
            }
            if let Some(first) = seen.get(&name) {
                self.err(
                    Diagnostic::at(format!("host `{name}` is declared twice"), h.name.span())
                        .label("second declaration")
                        .related(first.clone(), "first declared here"),
                );
            }
            seen.insert(name.clone(), h.name.span());
            let docker = h
                .docker
                .as_ref()
                .map_or(DEFAULT_DOCKER.to_string(), |d| d.get_ref().clone());
            if let Some(d) = &h.docker {
                let ok = ["unix://", "tcp://", "https://"]
                    .iter()
                    .any(|p| d.get_ref().starts_with(p) && d.get_ref().len() > p.len());
                if d.get_ref().starts_with("ssh://") {
                    if let Err(e) = crate::model::ssh_target::SshTarget::parse(d.get_ref()) {
                        self.err(
                            Diagnostic::at(
                                format!("invalid SSH endpoint `{}`: {e}", d.get_ref()),
                                d.span(),
                            )
                            .help("`ssh://user@host` or `ssh://user@host:2222`"),
                        );
                    }
                    if h.tls.is_some() {
                        self.err(
                            Diagnostic::at(
                                "`tls` applies to `tcp://` endpoints; SSH secures an `ssh://` one",
                                d.span(),
                            )
                            .help("remove `tls`"),
                        );
                    }
                } else if !ok {
                    self.err(
                        Diagnostic::at(
                            format!("invalid Docker endpoint `{}`", d.get_ref()),
                            d.span(),
                        )
                        .help(
                            "use `unix:///var/run/docker.sock`, `tcp://HOST:2376` (with `tls`) or `ssh://user@host`",
                        ),
                    );
                }
                if d.get_ref().starts_with("unix://") && h.tls.is_some() {
                    self.err(
                        Diagnostic::at(
                            "`tls` applies to `tcp://` endpoints, not to a unix socket",
                            d.span(),
                        )
                        .help("remove `tls`, or use `tcp://HOST:2376`"),
                    );
                }
                if d.get_ref().starts_with("tcp://")
                    && h.tls.is_none()
                    && !d.get_ref().contains("127.0.0.1")
                    && !d.get_ref().contains("localhost")
                {
                    self.err(
                        Diagnostic::at("a remote `tcp://` Docker endpoint needs `tls` (ca, cert, key)", d.span())
                            .help("an unauthenticated Docker socket on the network is root access for anyone who reaches it"),
                    );
                }
            }
            let address = match &h.address {
                Some(a) => {
                    if a.get_ref().parse::<std::net::IpAddr>().is_err() && a.get_ref().is_empty() {
                        self.err(Diagnostic::at("`address` must not be empty", a.span()));
                    }
                    a.get_ref().clone()
                }
                None => "127.0.0.1".to_string(),
            };
            out.push(Host {
                name,
                docker,
                address,
                tls: h.tls.as_ref().map(|t| Tls {
                    ca: t.ca.clone(),
                    cert: t.cert.clone(),
                    key: t.key.clone(),
                }),
            });
        }
        out
    }
}
