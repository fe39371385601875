//! `[registry."HOST"]`: the account gantry pulls with from one registry. The password
//! itself is never part of the model (nor of the state or the plan): only the name of the
//! variable of gantry's environment that holds it, read at pre-flight.

/// The account for one registry host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registry {
    pub username: String,
    /// The NAME of the variable holding the password.
    pub password_env: String,
}

/// Whether `host` is a registry host as an image reference names it: a domain or an IP
/// address (IPv6 in brackets), with an optional `:port`, no scheme and no path.
pub fn valid_registry_host(host: &str) -> bool {
    let (name, port) = match host.rsplit_once(':') {
        Some((n, _)) if !n.ends_with(']') && n.contains(':') => (host, None),
        Some((n, p)) => (n, Some(p)),
        None => (host, None),
    };
    if let Some(p) = port
        && p.parse::<u16>().map_or(true, |p| p == 0)
    {
        return false;
    }
    if let Some(inner) = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        return inner.parse::<std::net::Ipv6Addr>().is_ok();
    }
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

#[cfg(test)]
mod tests {
    use super::valid_registry_host;

    #[test]
    fn registry_hosts() {
        for ok in [
            "registry.example",
            "localhost:5000",
            "127.0.0.1:41234",
            "docker.io",
            "[::1]:5000",
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com",
        ] {
            assert!(valid_registry_host(ok), "{ok}");
        }
        for bad in [
            "",
            "https://registry.example",
            "registry.example/team",
            "registry.example:",
            "registry.example:0",
            "registry.example:99999",
            "-bad.example",
            "under_score.example",
            "a..b",
            "[zz]:5000",
        ] {
            assert!(!valid_registry_host(bad), "{bad}");
        }
    }
}
