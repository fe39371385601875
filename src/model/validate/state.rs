//! `[state]`: the backend and its settings.

use std::str::FromStr;

use super::Validator;
use crate::config::TomlState;
use crate::diag::Diagnostic;
use crate::model::Duration;
use crate::model::state_backend::{DEFAULT_STALE_LOCK_AFTER, S3Backend, StateBackend};

impl Validator<'_> {
    pub(super) fn state_backend(&mut self, raw: Option<&TomlState>, project: &str) -> StateBackend {
        let Some(s) = raw else {
            return StateBackend::Local;
        };
        let stale_lock_after = match &s.stale_lock_after {
            None => DEFAULT_STALE_LOCK_AFTER,
            Some(v) => match Duration::from_str(v.get_ref()) {
                Ok(d) if d.0 >= std::time::Duration::from_secs(1) => d,
                Ok(_) => {
                    self.err(
                        Diagnostic::at("`stale_lock_after` must be at least 1s", v.span())
                            .label("too short"),
                    );
                    DEFAULT_STALE_LOCK_AFTER
                }
                Err(e) => {
                    self.err(Diagnostic::at(e, v.span()).label("not a duration"));
                    DEFAULT_STALE_LOCK_AFTER
                }
            },
        };
        let backend = s.backend.as_ref().map(|b| (b.get_ref().as_str(), b.span()));
        match backend {
            None | Some(("local", _)) => StateBackend::Local,
            Some(("s3", span)) => {
                let Some(bucket) = &s.bucket else {
                    self.err(
                        Diagnostic::at("`backend = \"s3\"` needs a `bucket`", span)
                            .label("no bucket")
                            .help("add `bucket = \"NAME\"` to `[state]`"),
                    );
                    return StateBackend::Local;
                };
                if !valid_bucket(bucket.get_ref()) {
                    self.err(
                        Diagnostic::at(
                            format!("`{}` is not an S3 bucket name", bucket.get_ref()),
                            bucket.span(),
                        )
                        .label("not a bucket name")
                        .help("3 to 63 lowercase letters, digits, `.` and `-`"),
                    );
                }
                let key = s
                    .key
                    .as_ref()
                    .map(|k| k.get_ref().trim_matches('/').to_string())
                    .unwrap_or_else(|| project.to_string());
                if let Some(k) = &s.key
                    && key.is_empty()
                {
                    self.err(
                        Diagnostic::at("`key` must not be empty", k.span())
                            .label("empty")
                            .help("leave `key` out to use the project's name"),
                    );
                }
                if let Some(e) = &s.endpoint
                    && !(e.get_ref().starts_with("http://") || e.get_ref().starts_with("https://"))
                {
                    self.err(
                        Diagnostic::at(
                            format!(
                                "`endpoint` must be an http:// or https:// URL, found `{}`",
                                e.get_ref()
                            ),
                            e.span(),
                        )
                        .label("not a URL"),
                    );
                }
                StateBackend::S3(S3Backend {
                    bucket: bucket.get_ref().clone(),
                    key,
                    region: s.region.as_ref().map(|r| r.get_ref().clone()),
                    endpoint: s
                        .endpoint
                        .as_ref()
                        .map(|e| e.get_ref().trim_end_matches('/').to_string()),
                    stale_lock_after,
                })
            }
            Some((other, span)) => {
                self.err(
                    Diagnostic::at(format!("unknown state backend `{other}`"), span)
                        .label("unknown backend")
                        .help("use `\"local\"` or `\"s3\"`"),
                );
                StateBackend::Local
            }
        }
    }
}

fn valid_bucket(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// `[state]` alone, for the commands that open the state without the whole model
/// (`history`, `force-unlock`, `state pull`). A file that cannot be read as TOML (or has
/// keys gantry does not know, in `[state]` or elsewhere) is refused with its problems: a
/// broken `[state]` must never fall back to the local directory unnoticed.
pub fn state_backend(raw: &crate::config::RawConfig) -> Result<StateBackend, Vec<Diagnostic>> {
    struct NoFiles;
    impl crate::model::FileFacts for NoFiles {
        fn env_file(&self, _: &str) -> Result<crate::model::EnvFileFacts, String> {
            Err("not read here".into())
        }
    }
    let mut v = Validator {
        diags: raw.diagnostics.clone(),
        files: &NoFiles,
    };
    let project = raw
        .project
        .as_ref()
        .map(|p| p.name.get_ref().clone())
        .unwrap_or_default();
    let backend = v.state_backend(raw.state.as_ref(), &project);
    if v.diags.is_empty() {
        Ok(backend)
    } else {
        Err(v.diags)
    }
}

#[cfg(test)]
mod tests {
    use crate::model::state_backend::StateBackend;

    fn backend(state: &str) -> Result<StateBackend, Vec<String>> {
        let source = format!("[project]\nname = \"games-api\"\n\n{state}");
        super::state_backend(&crate::config::parse(&source))
            .map_err(|d| d.into_iter().map(|d| d.message).collect())
    }

    #[test]
    fn s3_settings_are_read_and_the_key_defaults_to_the_project() {
        assert_eq!(backend(""), Ok(StateBackend::Local));
        assert_eq!(
            backend("[state]\nbackend = \"local\"\n"),
            Ok(StateBackend::Local)
        );
        let Ok(StateBackend::S3(s3)) = backend(
            "[state]\nbackend = \"s3\"\nbucket = \"deploy-state\"\nregion = \"ap-northeast-1\"\nendpoint = \"https://s3.internal/\"\nstale_lock_after = \"30s\"\n",
        ) else {
            panic!("s3")
        };
        assert_eq!(s3.url(), "s3://deploy-state/games-api");
        assert_eq!(s3.endpoint.as_deref(), Some("https://s3.internal"));
        assert_eq!(s3.stale_lock_after.0, std::time::Duration::from_secs(30));
    }

    #[test]
    fn every_problem_of_the_section_is_reported() {
        let e = backend("[state]\nbackend = \"s3\"\nstale_lock_after = \"soon\"\n").unwrap_err();
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e.iter().any(|m| m.contains("needs a `bucket`")), "{e:?}");
        let e = backend(
            "[state]\nbackend = \"s3\"\nbucket = \"Bad_Bucket\"\nendpoint = \"s3.internal\"\n",
        )
        .unwrap_err();
        assert_eq!(e.len(), 2, "{e:?}");
        let e = backend("[state]\nbackend = \"gcs\"\n").unwrap_err();
        assert!(e[0].contains("unknown state backend `gcs`"), "{e:?}");
        let e =
            backend("[state]\nbackend = \"s3\"\nbucket = \"b-1\"\ntable = \"x\"\n").unwrap_err();
        assert!(e[0].contains("table"), "{e:?}");
    }
}
