//! The shared AWS profile files (`~/.aws/credentials`, `~/.aws/config`): the part of the
//! standard credential chain that object_store does not read. object_store covers the
//! environment's keys, web identity (EKS, GitHub OIDC), the container's and the instance's
//! role; this adds the named profile (`AWS_PROFILE`, else `default`) with static keys or a
//! `credential_process` (which is also how SSO and role profiles are used without the AWS
//! SDK: `credential_process = aws configure export-credentials --profile NAME --format process`).
//! Keys are read, handed to the S3 client and never written or printed anywhere.

use std::path::PathBuf;

/// What a profile gives.
#[derive(Debug, Default)]
pub struct Profile {
    pub credential: Option<Credential>,
    pub region: Option<String>,
}

pub struct Credential {
    pub key_id: String,
    pub secret_key: String,
    pub token: Option<String>,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credential(..)")
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn home_file(var: &str, name: &str) -> Option<PathBuf> {
    env(var)
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".aws").join(name)))
}

/// The profile named by `AWS_PROFILE` (else `default`) in the shared files, `None` when
/// neither file has it. An error only for a `credential_process` that fails.
pub fn from_files() -> Result<Option<Profile>, String> {
    let name = env("AWS_PROFILE").unwrap_or_else(|| "default".into());
    let credentials = home_file("AWS_SHARED_CREDENTIALS_FILE", "credentials")
        .and_then(|p| std::fs::read_to_string(p).ok())
        .map(|t| section(&t, &name))
        .unwrap_or_default();
    let config_name = match name.as_str() {
        "default" => "default".to_string(),
        n => format!("profile {n}"),
    };
    let config = home_file("AWS_CONFIG_FILE", "config")
        .and_then(|p| std::fs::read_to_string(p).ok())
        .map(|t| section(&t, &config_name))
        .unwrap_or_default();
    if credentials.is_empty() && config.is_empty() {
        return Ok(None);
    }
    let get = |key: &str| {
        credentials
            .iter()
            .chain(config.iter())
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    let mut profile = Profile {
        credential: None,
        region: get("region"),
    };
    if let (Some(key_id), Some(secret_key)) =
        (get("aws_access_key_id"), get("aws_secret_access_key"))
    {
        profile.credential = Some(Credential {
            key_id,
            secret_key,
            token: get("aws_session_token"),
        });
    } else if let Some(command) = get("credential_process") {
        profile.credential = Some(run_process(&name, &command)?);
    }
    Ok(Some(profile))
}

/// The `key = value` pairs of `[name]` in an INI file.
fn section(text: &str, name: &str) -> Vec<(String, String)> {
    let mut inside = false;
    let mut found = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = header.trim() == name;
            continue;
        }
        if inside && let Some((k, v)) = line.split_once('=') {
            found.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    found
}

/// Runs a profile's `credential_process` (its output is the documented JSON: `Version` 1,
/// `AccessKeyId`, `SecretAccessKey`, `SessionToken`). Its output is never shown: it holds
/// the secret.
fn run_process(profile: &str, command: &str) -> Result<Credential, String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Output {
        access_key_id: String,
        secret_access_key: String,
        session_token: Option<String>,
    }
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| {
            format!("the credential_process of AWS profile `{profile}` could not start: {e}")
        })?;
    if !out.status.success() {
        return Err(format!(
            "the credential_process of AWS profile `{profile}` failed ({})",
            out.status
        ));
    }
    let parsed: Output = serde_json::from_slice(&out.stdout).map_err(|_| {
        format!("the credential_process of AWS profile `{profile}` printed no credentials JSON")
    })?;
    Ok(Credential {
        key_id: parsed.access_key_id,
        secret_key: parsed.secret_access_key,
        token: parsed.session_token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_of_both_files_are_read() {
        let text = "[default]\naws_access_key_id = A\n\n[profile ci]\nregion = eu-west-1\n# c\nCredential_Process = echo\n";
        assert_eq!(
            section(text, "default"),
            vec![("aws_access_key_id".into(), "A".into())]
        );
        assert_eq!(
            section(text, "profile ci"),
            vec![
                ("region".into(), "eu-west-1".into()),
                ("credential_process".into(), "echo".into())
            ]
        );
        assert!(section(text, "other").is_empty());
    }

    #[test]
    fn credential_process_output_is_parsed_and_its_failure_named_without_output() {
        let c = run_process(
            "p",
            r#"echo '{"Version":1,"AccessKeyId":"AK","SecretAccessKey":"SK","SessionToken":"T"}'"#,
        )
        .unwrap();
        assert_eq!((c.key_id.as_str(), c.token.as_deref()), ("AK", Some("T")));
        let e = run_process("p", "echo SECRET; exit 3").unwrap_err();
        assert!(e.contains("failed") && !e.contains("SECRET"), "{e}");
        let e = run_process("p", "echo SECRET").unwrap_err();
        assert!(!e.contains("SECRET"), "{e}");
    }
}
