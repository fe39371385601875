//! What a Swarm service spec can take of a service's container options, where it differs
//! from a container's: shared by validation (which refuses the rest) and the Swarm driver
//! (which maps the rest).

use std::str::FromStr;

use super::ByteSize;

/// One `tmpfs` entry as Swarm mounts it: a `tmpfs` mount with a size and a mode. Docker's
/// service API (1.41) has no other tmpfs option; its tmpfs mounts are always
/// `noexec,nosuid,nodev`, so those words are accepted and change nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwarmTmpfs {
    pub target: String,
    pub size_bytes: Option<u64>,
    /// File mode of the mount's root, e.g. `0o1777`.
    pub mode: Option<u32>,
    pub read_only: bool,
}

impl FromStr for SwarmTmpfs {
    type Err = String;
    /// `"/run"`, `"/run:size=64m,mode=1777"`, `"/cache:ro"`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (target, options) = s.split_once(':').unwrap_or((s, ""));
        let mut out = SwarmTmpfs {
            target: target.to_string(),
            size_bytes: None,
            mode: None,
            read_only: false,
        };
        for option in options.split(',').filter(|o| !o.is_empty()) {
            match option.split_once('=') {
                Some(("size", v)) => {
                    out.size_bytes = Some(
                        ByteSize::from_str(v)
                            .map_err(|e| format!("tmpfs `{s}`: {e}"))?
                            .0,
                    );
                }
                Some(("mode", v)) => {
                    out.mode = Some(u32::from_str_radix(v, 8).map_err(|_| {
                        format!("tmpfs `{s}`: mode `{v}` is not an octal file mode (e.g. 1777)")
                    })?);
                }
                None if option == "ro" => out.read_only = true,
                None if matches!(option, "rw" | "noexec" | "nosuid" | "nodev") => {}
                _ => {
                    return Err(format!(
                        "tmpfs `{s}`: Docker Swarm's tmpfs mounts take `size=`, `mode=` and `ro` only, not `{option}` (they are always noexec, nosuid, nodev)"
                    ));
                }
            }
        }
        Ok(out)
    }
}

/// `extra_hosts`' `NAME:IP` as Swarm's `Hosts` takes it: `IP NAME` (the `/etc/hosts` order).
pub fn swarm_host_line(extra_host: &str) -> String {
    match extra_host.split_once(':') {
        Some((name, ip)) => format!("{ip} {name}"),
        None => extra_host.to_string(),
    }
}

/// A capability as Docker's service API names it: `CAP_NET_ADMIN`, or `ALL`.
pub fn swarm_capability(name: &str) -> String {
    if name == "ALL" || name.starts_with("CAP_") {
        name.to_string()
    } else {
        format!("CAP_{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tmpfs_entries_for_swarm() {
        let t: SwarmTmpfs = "/run:size=64m,mode=1777,noexec".parse().unwrap();
        assert_eq!(t.target, "/run");
        assert_eq!(t.size_bytes, Some(64 * 1024 * 1024));
        assert_eq!(t.mode, Some(0o1777));
        assert!(!t.read_only);
        let t: SwarmTmpfs = "/tmp".parse().unwrap();
        assert_eq!((t.size_bytes, t.mode), (None, None));
        assert!("/c:ro".parse::<SwarmTmpfs>().unwrap().read_only);
        for bad in ["/x:uid=1000", "/x:exec", "/x:size=lots", "/x:mode=999"] {
            assert!(bad.parse::<SwarmTmpfs>().is_err(), "{bad}");
        }
    }

    #[test]
    fn hosts_and_capabilities() {
        assert_eq!(
            swarm_host_line("metadata:169.254.169.254"),
            "169.254.169.254 metadata"
        );
        assert_eq!(swarm_host_line("v6:fd00::1"), "fd00::1 v6");
        assert_eq!(swarm_capability("NET_ADMIN"), "CAP_NET_ADMIN");
        assert_eq!(swarm_capability("ALL"), "ALL");
    }
}
