//! `[registry."HOST"]`: the host as an image reference names it, a user name, and the name
//! of the variable holding the password. Whether that variable is set is a pre-flight
//! question (`plan` runs offline, often without the secret), not a validation error.

use std::collections::BTreeMap;

use super::{Validator, valid_env_name};
use crate::config::{Named, TomlRegistry};
use crate::diag::Diagnostic;
use crate::model::registry::{Registry, valid_registry_host};

impl Validator<'_> {
    pub(super) fn registries(&mut self, raw: &[Named<TomlRegistry>]) -> BTreeMap<String, Registry> {
        let mut out = BTreeMap::new();
        for named in raw {
            let host = &named.name;
            if !valid_registry_host(host) {
                let mut d = Diagnostic::at(
                    format!("invalid registry host `{host}`"),
                    named.span.clone(),
                )
                .label("not a registry host");
                let bare = host
                    .trim_start_matches("https://")
                    .trim_start_matches("http://")
                    .split('/')
                    .next()
                    .unwrap_or_default();
                d = if bare != host && valid_registry_host(bare) {
                    d.help(format!(
                        "write the host as an image reference names it, without scheme or path: `[registry.\"{bare}\"]`"
                    ))
                } else {
                    d.help("a host name or IP address with an optional `:port`, e.g. `[registry.\"registry.example:5000\"]`")
                };
                self.err(d);
            }
            let Some(toml) = &named.value else { continue };
            let username = toml.username.get_ref();
            if username.trim().is_empty() {
                self.err(
                    Diagnostic::at(
                        format!("registry `{host}` has an empty `username`"),
                        toml.username.span(),
                    )
                    .label("empty")
                    .help("the account gantry pulls with"),
                );
            }
            let var = toml.password_env.get_ref();
            if !valid_env_name(var) {
                self.err(
                    Diagnostic::at(
                        format!(
                            "registry `{host}` `password_env` is `{var}`, which is not a variable name"
                        ),
                        toml.password_env.span(),
                    )
                    .label("not a variable name")
                    .help("the NAME of a variable of gantry's environment holding the password, e.g. `REGISTRY_PASSWORD` (letters, digits and `_`, not starting with a digit)"),
                );
            }
            out.insert(
                host.clone(),
                Registry {
                    username: username.clone(),
                    password_env: var.clone(),
                },
            );
        }
        out
    }
}
