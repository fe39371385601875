//! Registry credentials for pulls, found where `docker pull` finds them, so that whoever can
//! `docker pull` an image on this machine can deploy it: the configuration's
//! `[registry."HOST"]` first (its password from the variable it names), then the Docker
//! config (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`): an `auths` entry that
//! holds credentials, then `credHelpers[HOST]` or `credsStore` through
//! `docker-credential-NAME get`.
//!
//! The parsing is pure and unit-tested here; the helper runs as a process with a time limit.
//! No message of this module holds a secret: errors name the registry, the file or the helper.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;

use crate::model::registry::Registry;
use crate::ports::RegistryAuth;

/// Docker Hub as image references name it, and as the Docker config keys it.
pub const DOCKER_HUB: &str = "docker.io";
pub const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// How long a credential helper may take (a keychain prompt would wait forever).
pub const HELPER_TIMEOUT: Duration = Duration::from_secs(30);

/// The registry host of an image reference, as Docker computes it: the part before the first
/// `/` when it looks like a host (has a `.` or a `:`, or is `localhost`, or has an upper-case
/// letter), else Docker Hub.
pub fn registry_host(image: &str) -> String {
    let domain = match image.split_once('/') {
        Some((first, _))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            first
        }
        _ => DOCKER_HUB,
    };
    if domain == "index.docker.io" {
        DOCKER_HUB.to_string()
    } else {
        domain.to_string()
    }
}

/// An image reference's repository, tag and digest: `reg:5000/app:1@sha256:ab` ->
/// (`reg:5000/app`, `Some("1")`, `Some("sha256:ab")`).
pub fn split_reference(reference: &str) -> (&str, Option<&str>, Option<&str>) {
    let (name, digest) = match reference.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (reference, None),
    };
    match name.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, Some(tag), digest),
        _ => (name, None, digest),
    }
}

/// The server address of a registry host, as the Docker config and the helpers key it.
pub fn server_key(host: &str) -> &str {
    if host == DOCKER_HUB {
        DOCKER_HUB_KEY
    } else {
        host
    }
}

/// `https://host/v1/` -> `host`: how Docker compares the keys of `auths`.
fn hostname(key: &str) -> &str {
    let rest = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    rest.split('/').next().unwrap_or(rest)
}

/// Where the credentials of a pull came from, in the user's words (never the secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `[registry."HOST"]`, with the variable holding the password.
    Config { variable: String },
    /// An `auths` entry of this Docker config file.
    Auths(PathBuf),
    /// `docker-credential-NAME`.
    Helper(String),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Config { variable } => {
                write!(
                    f,
                    "the configuration's [registry] section (password from ${variable})"
                )
            }
            Source::Auths(path) => write!(f, "`auths` of {}", path.display()),
            Source::Helper(name) => write!(f, "credential helper docker-credential-{name}"),
        }
    }
}

/// Credentials and where they came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub auth: RegistryAuth,
    pub source: Source,
}

/// The parts of a Docker config file that hold credentials.
#[derive(Debug, Default, Deserialize)]
pub struct DockerConfig {
    #[serde(default)]
    pub auths: BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credsStore")]
    pub creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    pub cred_helpers: BTreeMap<String, String>,
}

#[derive(Default, Deserialize)]
pub struct AuthEntry {
    #[serde(default)]
    pub auth: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub identitytoken: Option<String>,
}

impl std::fmt::Debug for AuthEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthEntry { .. }")
    }
}

/// Reads a Docker config file's text. The error says what is wrong, not what is in it.
pub fn parse_docker_config(text: &str) -> Result<DockerConfig, String> {
    serde_json::from_str(text).map_err(|e| {
        format!(
            "it is not a Docker config (line {}, column {})",
            e.line(),
            e.column()
        )
    })
}

impl DockerConfig {
    /// The credentials `auths` holds for `host`: the entry keyed by its server address, else
    /// any entry whose key names the same host (`https://host/v2/`). An entry without
    /// credentials (what `docker login` leaves beside a `credsStore`) is none.
    pub fn auths_for(&self, host: &str) -> Result<Option<RegistryAuth>, String> {
        let key = server_key(host);
        let entry = self.auths.get(key).or_else(|| {
            self.auths
                .iter()
                .find(|(k, _)| hostname(k) == hostname(key))
                .map(|(_, e)| e)
        });
        let Some(e) = entry else { return Ok(None) };
        let mut auth = RegistryAuth {
            server: key.to_string(),
            ..Default::default()
        };
        if let Some(encoded) = e.auth.as_deref().filter(|a| !a.is_empty()) {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .map_err(|_| format!("the `auth` of registry `{host}` is not base64"))?;
            let text = String::from_utf8(bytes)
                .map_err(|_| format!("the `auth` of registry `{host}` is not text"))?;
            let (user, password) = text.split_once(':').ok_or_else(|| {
                format!("the `auth` of registry `{host}` is not `user:password` in base64")
            })?;
            auth.username = user.to_string();
            auth.password = password.to_string();
        } else if let Some(user) = e.username.as_deref().filter(|u| !u.is_empty()) {
            auth.username = user.to_string();
            auth.password = e.password.clone().unwrap_or_default();
        }
        auth.identity_token = e.identitytoken.clone().filter(|t| !t.is_empty());
        if auth.username.is_empty() && auth.identity_token.is_none() {
            return Ok(None);
        }
        Ok(Some(auth))
    }

    /// The credential helper for `host`: its `credHelpers` entry, else `credsStore`.
    pub fn helper_for(&self, host: &str) -> Option<&str> {
        let key = server_key(host);
        self.cred_helpers
            .get(key)
            .or_else(|| {
                self.cred_helpers
                    .iter()
                    .find(|(k, _)| hostname(k) == hostname(key))
                    .map(|(_, v)| v)
            })
            .or(self.creds_store.as_ref())
            .map(String::as_str)
            .filter(|h| !h.is_empty())
    }
}

/// What a helper's `get` prints.
#[derive(Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

/// Reads a helper's answer; a user name `<token>` means the secret is an identity token.
pub fn parse_helper_answer(host: &str, stdout: &[u8]) -> Result<RegistryAuth, String> {
    let a: HelperAnswer = serde_json::from_slice(stdout)
        .map_err(|_| "its answer is not the JSON of a credential helper".to_string())?;
    let mut auth = RegistryAuth {
        server: server_key(host).to_string(),
        ..Default::default()
    };
    if a.username == "<token>" {
        auth.identity_token = Some(a.secret);
    } else {
        auth.username = a.username;
        auth.password = a.secret;
    }
    Ok(auth)
}

/// Whether a helper's failed `get` only means it holds nothing for the registry.
fn not_found(output: &str) -> bool {
    output.contains("credentials not found")
}

/// Runs `docker-credential-NAME get` for `host`; `Ok(None)` when it holds nothing for it.
pub async fn helper_get(
    name: &str,
    host: &str,
    timeout: Duration,
) -> Result<Option<RegistryAuth>, String> {
    run_helper(&format!("docker-credential-{name}"), host, timeout).await
}

/// Runs the helper `program` (a name looked up on PATH, or a path) for `host`.
async fn run_helper(
    program: &str,
    host: &str,
    timeout: Duration,
) -> Result<Option<RegistryAuth>, String> {
    use tokio::io::AsyncWriteExt as _;
    let mut child = tokio::process::Command::new(program)
        .arg("get")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that does not read its input fails below, with its own words.
        let _ = stdin.write_all(server_key(host).as_bytes()).await;
    }
    let output = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .map_err(|_| format!("{program} get gave no answer within {timeout:?}"))?
        .map_err(|e| format!("{program} get failed: {e}"))?;
    if !output.status.success() {
        let said = String::from_utf8_lossy(&output.stdout).to_string()
            + &String::from_utf8_lossy(&output.stderr);
        if not_found(&said) {
            return Ok(None);
        }
        return Err(format!(
            "{program} get failed ({}): {}",
            output.status,
            said.lines().next().unwrap_or("").trim()
        ));
    }
    parse_helper_answer(host, &output.stdout)
        .map(Some)
        .map_err(|e| format!("{program} get: {e}"))
}

/// The Docker config file: `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
pub fn docker_config_path(docker_config: Option<&str>, home: Option<&str>) -> Option<PathBuf> {
    match (docker_config.filter(|d| !d.is_empty()), home) {
        (Some(dir), _) => Some(Path::new(dir).join("config.json")),
        (None, Some(home)) => Some(Path::new(home).join(".docker").join("config.json")),
        (None, None) => None,
    }
}

/// The credentials of a pull from `host`, in `docker pull`'s order, or `None` (an
/// anonymous pull). `env` reads gantry's environment. Errors name the registry and where
/// the lookup failed, never a secret.
pub async fn lookup(
    host: &str,
    configured: Option<&Registry>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Found>, String> {
    if let Some(r) = configured {
        let Some(password) = env(&r.password_env) else {
            return Err(format!(
                "registry `{host}`: its [registry] section takes the password from ${}, which is not set in gantry's environment",
                r.password_env
            ));
        };
        return Ok(Some(Found {
            auth: RegistryAuth {
                server: server_key(host).to_string(),
                username: r.username.clone(),
                password,
                identity_token: None,
            },
            source: Source::Config {
                variable: r.password_env.clone(),
            },
        }));
    }
    let Some(path) = docker_config_path(env("DOCKER_CONFIG").as_deref(), env("HOME").as_deref())
    else {
        return Ok(None);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(format!(
                "registry `{host}`: cannot read the Docker config {}: {e}",
                path.display()
            ));
        }
    };
    let config = parse_docker_config(&text).map_err(|e| {
        format!(
            "registry `{host}`: the Docker config {}: {e}",
            path.display()
        )
    })?;
    if let Some(auth) = config.auths_for(host).map_err(|e| {
        format!(
            "registry `{host}`: the Docker config {}: {e}",
            path.display()
        )
    })? {
        return Ok(Some(Found {
            auth,
            source: Source::Auths(path),
        }));
    }
    let Some(helper) = config.helper_for(host) else {
        return Ok(None);
    };
    let auth = helper_get(helper, host, HELPER_TIMEOUT)
        .await
        .map_err(|e| format!("registry `{host}`: {e}"))?;
    Ok(auth.map(|auth| Found {
        auth,
        source: Source::Helper(helper.to_string()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_into_repository_tag_and_digest() {
        assert_eq!(split_reference("redis:7"), ("redis", Some("7"), None));
        assert_eq!(
            split_reference("reg:5000/app:1@sha256:ab"),
            ("reg:5000/app", Some("1"), Some("sha256:ab"))
        );
        assert_eq!(
            split_reference("reg:5000/app"),
            ("reg:5000/app", None, None)
        );
        assert_eq!(
            split_reference("reg/app@sha256:ab"),
            ("reg/app", None, Some("sha256:ab"))
        );
    }

    #[test]
    fn registry_hosts_as_docker_computes_them() {
        for (image, host) in [
            ("redis:7", "docker.io"),
            ("library/redis:7", "docker.io"),
            ("team/app:1", "docker.io"),
            ("docker.io/team/app:1", "docker.io"),
            ("index.docker.io/team/app:1", "docker.io"),
            ("registry.example/app:1", "registry.example"),
            ("localhost/app:1", "localhost"),
            ("localhost:5000/app:1", "localhost:5000"),
            ("127.0.0.1:41234/team/app@sha256:abc", "127.0.0.1:41234"),
            ("Team/app:1", "Team"),
        ] {
            assert_eq!(registry_host(image), host, "{image}");
        }
        assert_eq!(server_key("docker.io"), "https://index.docker.io/v1/");
        assert_eq!(server_key("registry.example"), "registry.example");
    }

    const CONFIG: &str = r#"{
        "auths": {
            "https://index.docker.io/v1/": {"auth": "aHViOmh1YnBhc3M="},
            "registry.example": {"username": "ci", "password": "s3cret"},
            "https://other.example/v2/": {"auth": "b3RoZXI6cGFzczpjb2xvbg=="},
            "token.example": {"identitytoken": "refresh-me"},
            "stored.example": {}
        },
        "credsStore": "desktop",
        "credHelpers": {"ecr.example": "ecr-login"}
    }"#;

    #[test]
    fn auths_entries_in_each_form() {
        let c = parse_docker_config(CONFIG).unwrap();
        let hub = c.auths_for("docker.io").unwrap().unwrap();
        assert_eq!(
            (hub.username.as_str(), hub.password.as_str()),
            ("hub", "hubpass")
        );
        assert_eq!(hub.server, "https://index.docker.io/v1/");
        let plain = c.auths_for("registry.example").unwrap().unwrap();
        assert_eq!(
            (plain.username.as_str(), plain.password.as_str()),
            ("ci", "s3cret")
        );
        // A key with a scheme and a path names its host; a password may hold a colon.
        let other = c.auths_for("other.example").unwrap().unwrap();
        assert_eq!(
            (other.username.as_str(), other.password.as_str()),
            ("other", "pass:colon")
        );
        let token = c.auths_for("token.example").unwrap().unwrap();
        assert_eq!(token.identity_token.as_deref(), Some("refresh-me"));
        // An empty entry (credentials in the store) and an absent one are none.
        assert_eq!(c.auths_for("stored.example").unwrap(), None);
        assert_eq!(c.auths_for("nowhere.example").unwrap(), None);
    }

    #[test]
    fn helpers_per_registry_then_the_store() {
        let c = parse_docker_config(CONFIG).unwrap();
        assert_eq!(c.helper_for("ecr.example"), Some("ecr-login"));
        assert_eq!(c.helper_for("stored.example"), Some("desktop"));
        let none = parse_docker_config(r#"{"auths": {}}"#).unwrap();
        assert_eq!(none.helper_for("stored.example"), None);
    }

    #[test]
    fn broken_configs_are_refused_without_their_content() {
        let e = parse_docker_config("{\"auths\": {\"x\": {\"auth\": 3}}}").unwrap_err();
        assert!(e.contains("not a Docker config"), "{e}");
        let c = parse_docker_config(r#"{"auths": {"r.example": {"auth": "!!secret!!"}}}"#).unwrap();
        let e = c.auths_for("r.example").unwrap_err();
        assert!(
            e.contains("registry `r.example`") && !e.contains("secret"),
            "{e}"
        );
        // base64 of "nocolon"
        let c =
            parse_docker_config(r#"{"auths": {"r.example": {"auth": "bm9jb2xvbg=="}}}"#).unwrap();
        let e = c.auths_for("r.example").unwrap_err();
        assert!(!e.contains("nocolon"), "{e}");
    }

    #[test]
    fn helper_answers() {
        let a = parse_helper_answer(
            "docker.io",
            br#"{"ServerURL":"https://index.docker.io/v1/","Username":"u","Secret":"p"}"#,
        )
        .unwrap();
        assert_eq!((a.username.as_str(), a.password.as_str()), ("u", "p"));
        assert_eq!(a.server, DOCKER_HUB_KEY);
        let t =
            parse_helper_answer("r.example", br#"{"Username":"<token>","Secret":"tok"}"#).unwrap();
        assert_eq!(
            (t.username.as_str(), t.identity_token.as_deref()),
            ("", Some("tok"))
        );
        assert!(parse_helper_answer("r.example", b"secret garbage").is_err());
        assert!(not_found("credentials not found in native keychain\n"));
    }

    #[test]
    fn config_paths() {
        assert_eq!(
            docker_config_path(Some("/d"), Some("/h")),
            Some(PathBuf::from("/d/config.json"))
        );
        assert_eq!(
            docker_config_path(None, Some("/h")),
            Some(PathBuf::from("/h/.docker/config.json"))
        );
        assert_eq!(docker_config_path(Some(""), None), None);
    }

    #[tokio::test]
    async fn the_config_section_comes_first_and_needs_its_variable() {
        let r = Registry {
            username: "ci".into(),
            password_env: "PW".into(),
        };
        let env = |k: &str| (k == "PW").then(|| "hunter2".to_string());
        let found = lookup("r.example", Some(&r), &env).await.unwrap().unwrap();
        assert_eq!(found.auth.password, "hunter2");
        assert_eq!(
            found.source.to_string(),
            "the configuration's [registry] section (password from $PW)"
        );
        assert!(!format!("{found:?}").contains("hunter2"));
        let none = |_: &str| None;
        let e = lookup("r.example", Some(&r), &none).await.unwrap_err();
        assert!(
            e.contains("registry `r.example`") && e.contains("$PW"),
            "{e}"
        );
    }

    /// A helper script: what it was asked, its answer, its exit status, and a hung one.
    #[tokio::test]
    async fn helpers_run_with_a_time_limit() {
        let dir = tempfile::tempdir().unwrap();
        let script = |name: &str, body: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::process::Command::new("chmod")
                .arg("+x")
                .arg(&path)
                .status()
                .unwrap();
            path.to_string_lossy().to_string()
        };
        let ok = script(
            "ok",
            r#"read -r s; printf '{"ServerURL":"%s","Username":"u","Secret":"p"}' "$s""#,
        );
        let auth = run_helper(&ok, "docker.io", HELPER_TIMEOUT)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((auth.username.as_str(), auth.password.as_str()), ("u", "p"));
        let none = script(
            "none",
            "echo 'credentials not found in native keychain'; exit 1",
        );
        assert_eq!(
            run_helper(&none, "r.example", HELPER_TIMEOUT)
                .await
                .unwrap(),
            None
        );
        let broken = script("broken", "echo 'keychain locked' >&2; exit 3");
        let e = run_helper(&broken, "r.example", HELPER_TIMEOUT)
            .await
            .unwrap_err();
        assert!(e.contains("keychain locked"), "{e}");
        let hung = script("hung", "sleep 30");
        let started = std::time::Instant::now();
        let e = run_helper(&hung, "r.example", Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(e.contains("gave no answer within"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn the_docker_config_then_a_helper() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_string_lossy().to_string();
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"auths": {"a.example": {"auth": "dTpw"}}, "credHelpers": {"h.example": "gantry-unit-missing"}}"#,
        )
        .unwrap();
        let env = |k: &str| (k == "DOCKER_CONFIG").then(|| d.clone());
        let found = lookup("a.example", None, &env).await.unwrap().unwrap();
        assert_eq!(
            (found.auth.username.as_str(), found.auth.password.as_str()),
            ("u", "p")
        );
        assert!(matches!(found.source, Source::Auths(_)));
        assert_eq!(lookup("b.example", None, &env).await.unwrap(), None);
        // A helper that is not installed is an error naming the registry and the helper.
        let e = lookup("h.example", None, &env).await.unwrap_err();
        assert!(
            e.contains("registry `h.example`")
                && e.contains("docker-credential-gantry-unit-missing"),
            "{e}"
        );
    }
}
