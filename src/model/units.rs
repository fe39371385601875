//! Durations, sizes and image references: the small value types of the model.
//!
//! Each serialises to the short human form a user would write (`"30s"`, `"1000m"`), so that
//! plans and state files read naturally and compare equal when the meaning is equal
//! (`"1000M"` and `"1000m"` are the same limit).

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration written as `"500ms"`, `"30s"`, `"2m"`, `"1h 30m"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, JsonSchema)]
#[schemars(with = "String")]
pub struct Duration(pub std::time::Duration);

impl Duration {
    pub const fn from_secs(s: u64) -> Self {
        Duration(std::time::Duration::from_secs(s))
    }
    pub const fn from_millis(ms: u64) -> Self {
        Duration(std::time::Duration::from_millis(ms))
    }
    pub fn is_zero(&self) -> bool {
        self.0.is_zero()
    }
}

impl FromStr for Duration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s == "0" {
            return Ok(Duration::default());
        }
        humantime::parse_duration(s).map(Duration).map_err(|e| {
            format!("invalid duration `{s}`: {e} (write e.g. \"500ms\", \"30s\", \"2m\")")
        })
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_zero() {
            return f.write_str("0s");
        }
        write!(f, "{}", humantime::format_duration(self.0)).map(|_| ())
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A size in bytes written with Docker's binary units: `"100m"`, `"1000M"`, `"2g"`, `"512k"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, JsonSchema)]
#[schemars(with = "String")]
pub struct ByteSize(pub u64);

const UNITS: [(char, u32); 5] = [('k', 1), ('m', 2), ('g', 3), ('t', 4), ('p', 5)];

impl FromStr for ByteSize {
    type Err = String;
    /// Docker's `RAMInBytes`: a number, optional unit k/m/g/t/p (case-insensitive, powers of
    /// 1024), optional `b`, `ib`.
    fn from_str(s: &str) -> Result<Self, String> {
        let err = || format!("invalid size `{s}` (write e.g. \"512k\", \"100m\", \"2g\")");
        let t = s.trim().to_ascii_lowercase();
        let t = t
            .strip_suffix("ib")
            .or_else(|| t.strip_suffix('b'))
            .unwrap_or(&t);
        let (number, power) = match t.chars().last() {
            Some(c) if c.is_ascii_alphabetic() => {
                let power = UNITS.iter().find(|(u, _)| *u == c).ok_or_else(err)?.1;
                (t[..t.len() - 1].trim_end(), power)
            }
            _ => (t, 0),
        };
        if number.is_empty() || !number.chars().all(|c| c.is_ascii_digit() || c == '.') {
            return Err(err());
        }
        let value: f64 = number.parse().map_err(|_| err())?;
        let bytes = value * 1024f64.powi(power as i32);
        if !bytes.is_finite() || bytes >= u64::MAX as f64 {
            return Err(err());
        }
        Ok(ByteSize(bytes as u64))
    }
}

impl fmt::Display for ByteSize {
    /// The largest unit that represents the value exactly: `1048576000` -> `1000m`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, power) in UNITS.iter().rev() {
            let factor = 1024u64.pow(*power);
            if self.0 >= factor && self.0 % factor == 0 {
                return write!(f, "{}{unit}", self.0 / factor);
            }
        }
        write!(f, "{}b", self.0)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// An image reference split the way the Docker engine does: `[registry/]repo[:tag][@digest]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl FromStr for ImageRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("invalid image reference `{s}`"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                let valid = d.split_once(':').is_some_and(|(alg, hex)| {
                    !alg.is_empty() && hex.len() >= 32 && hex.chars().all(|c| c.is_ascii_hexdigit())
                });
                if !valid {
                    return Err(format!(
                        "invalid digest `{d}` in image `{s}` (expected `sha256:<64 hex>`)"
                    ));
                }
                (r, Some(d.to_string()))
            }
            None => (s, None),
        };
        // A colon after the last `/` is a tag; one before it is a registry port.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (repository, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if repository.is_empty() || repository.ends_with('/') {
            return Err(format!("invalid image reference `{s}`: no repository name"));
        }
        if let Some(tag) = tag {
            let ok = !tag.is_empty()
                && tag.len() <= 128
                && tag
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
                && !tag.starts_with(['.', '-']);
            if !ok {
                return Err(format!("invalid tag `{tag}` in image `{s}`"));
            }
        }
        Ok(ImageRef {
            repository: repository.to_string(),
            tag: tag.map(str::to_string),
            digest,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_round_trip_in_short_form() {
        for (input, shown) in [
            ("500ms", "500ms"),
            ("30s", "30s"),
            ("2m", "2m"),
            ("0", "0s"),
            ("1h 30m", "1h 30m"),
        ] {
            let d: Duration = input.parse().unwrap();
            assert_eq!(d.to_string(), shown);
            assert_eq!(shown.parse::<Duration>().unwrap(), d);
        }
        assert!("30".parse::<Duration>().is_err());
        assert!("fast".parse::<Duration>().is_err());
    }

    #[test]
    fn sizes_use_docker_binary_units() {
        assert_eq!("1000M".parse::<ByteSize>().unwrap().0, 1000 * 1024 * 1024);
        assert_eq!(
            "100m".parse::<ByteSize>().unwrap(),
            "100MB".parse().unwrap()
        );
        assert_eq!("2g".parse::<ByteSize>().unwrap().to_string(), "2g");
        assert_eq!("1536k".parse::<ByteSize>().unwrap().to_string(), "1536k");
        assert_eq!("1.5g".parse::<ByteSize>().unwrap().to_string(), "1536m");
        assert_eq!("100".parse::<ByteSize>().unwrap().to_string(), "100b");
        for bad in ["", "m", "10x", "-1m", "1e400g"] {
            assert!(bad.parse::<ByteSize>().is_err(), "{bad}");
        }
    }

    #[test]
    fn image_references_split_like_docker() {
        let i: ImageRef = "registry.example:5000/team/app:3074f46".parse().unwrap();
        assert_eq!(i.repository, "registry.example:5000/team/app");
        assert_eq!(i.tag.as_deref(), Some("3074f46"));
        let i: ImageRef = "registry.example:5000/app".parse().unwrap();
        assert_eq!(i.tag, None);
        let digest = format!("sha256:{}", "a".repeat(64));
        let i: ImageRef = format!("app@{digest}").parse().unwrap();
        assert_eq!(i.digest.as_deref(), Some(digest.as_str()));
        assert!("app:".parse::<ImageRef>().is_err());
        assert!("app@sha256:xyz".parse::<ImageRef>().is_err());
        assert!("my app:1".parse::<ImageRef>().is_err());
    }
}
