//! `[hooks]`, and the command arrays written with their own span (hooks, the blue-green
//! `idle_command` and `resume_command`), whose errors point at the array itself.

use toml::Spanned;

use super::{Validator, valid_env_name};
use crate::config::TomlHooks;
use crate::diag::Diagnostic;
use crate::model::hooks::{DEFAULT_HOOK_TIMEOUT, Hooks};

impl Validator<'_> {
    pub(super) fn hooks(&mut self, raw: Option<&TomlHooks>) -> Hooks {
        let Some(h) = raw else {
            return Hooks::default();
        };
        let before_apply = self.spanned_command(h.before_apply.as_ref(), "hooks.before_apply");
        let after_apply = self.spanned_command(h.after_apply.as_ref(), "hooks.after_apply");
        let on_failure = self.spanned_command(h.on_failure.as_ref(), "hooks.on_failure");
        let after_rollback =
            self.spanned_command(h.after_rollback.as_ref(), "hooks.after_rollback");
        let timeout = self.duration(h.timeout.as_ref(), DEFAULT_HOOK_TIMEOUT);
        if let Some(t) = &h.timeout
            && timeout.is_zero()
        {
            self.err(Diagnostic::at("hooks `timeout` must be more than 0", t.span()).label("zero"));
        }
        let mut secret_env = Vec::new();
        for name in &h.secret_env {
            if valid_env_name(name.get_ref()) {
                secret_env.push(name.get_ref().clone());
            } else {
                self.err(
                    Diagnostic::at(
                        format!(
                            "hooks `secret_env` names `{}`, which is not a variable name",
                            name.get_ref()
                        ),
                        name.span(),
                    )
                    .label("not a variable name")
                    .help("letters, digits and `_`, not starting with a digit"),
                );
            }
        }
        secret_env.sort();
        secret_env.dedup();
        Hooks {
            before_apply,
            after_apply,
            on_failure,
            after_rollback,
            timeout,
            secret_env,
        }
    }

    /// A command array that must name a program; the error points at the array.
    pub(super) fn spanned_command(
        &mut self,
        value: Option<&Spanned<Vec<String>>>,
        key: &str,
    ) -> Option<Vec<String>> {
        let cmd = value?;
        match cmd.get_ref().first() {
            Some(program) if !program.trim().is_empty() => Some(cmd.get_ref().clone()),
            _ => {
                self.err(
                    Diagnostic::at(
                        format!("`{key}` must name a program: it is empty"),
                        cmd.span(),
                    )
                    .label("no program")
                    .help("write the program and its arguments, e.g. `[\"./notify\", \"start\"]`"),
                );
                None
            }
        }
    }
}
