//! Per-layer pull progress on a terminal: the engine's pull stream (one event per layer and
//! status change: `Pulling fs layer`, `Downloading` with bytes, `Extracting`, `Pull complete`,
//! ...) in, one line per layer and host out. Pure: the terminal adapter
//! (`ops::pull_bars`) owns the bars and draws the lines this gives it.

use std::collections::BTreeMap;

use crate::ports::LayerProgress;

/// The last known state of each layer of each pull in flight, in the order the layers
/// first appeared.
#[derive(Debug, Default)]
pub struct PullView {
    pulls: BTreeMap<(String, String), Vec<(String, LayerProgress)>>,
}

/// Whether an event is about a layer: the engine names layers by the first 12 hex digits of
/// their digest; other events (`Pulling from repo`, `Digest: ...`, `Status: ...`) carry the
/// tag or nothing as their id.
pub fn is_layer(e: &LayerProgress) -> bool {
    e.id.len() == 12 && e.id.chars().all(|c| c.is_ascii_hexdigit())
}

/// `1.2 MB`, decimal as the Docker CLI shows it.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["kB", "MB", "GB", "TB"];
    if n < 1000 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1000.0;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// One layer's line: `pull on HOST: LAYER STATUS [CURRENT / TOTAL (P%)] (IMAGE)`, what
/// matters first (a terminal line is cut at its width; the image is last).
pub fn line(host: &str, image: &str, e: &LayerProgress) -> String {
    let amount = match (e.current, e.total) {
        (Some(c), Some(t)) if t > 0 => {
            let c = c.min(t);
            // In u128: an engine's byte counts are data, and `c * 100` must not overflow.
            let percent = u128::from(c) * 100 / u128::from(t);
            format!(" {} / {} ({percent}%)", bytes(c), bytes(t))
        }
        (Some(c), _) if c > 0 => format!(" {}", bytes(c)),
        _ => String::new(),
    };
    // The status is the engine's word for the step; one line, however long it is.
    let status: String = e
        .status
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(40)
        .collect();
    format!("pull on {host}: {} {status}{amount} ({image})", e.id)
}

impl PullView {
    /// Takes one event of the pull of `image` on `host`; returns the layer's new line, or
    /// `None` when the event is not about a layer.
    pub fn apply(&mut self, host: &str, image: &str, e: &LayerProgress) -> Option<String> {
        if !is_layer(e) {
            return None;
        }
        let layers = self
            .pulls
            .entry((host.to_string(), image.to_string()))
            .or_default();
        match layers.iter_mut().find(|(id, _)| *id == e.id) {
            Some((_, last)) => *last = e.clone(),
            None => layers.push((e.id.clone(), e.clone())),
        }
        Some(line(host, image, e))
    }

    /// Every layer's line of the pull of `image` on `host`, in order of appearance.
    pub fn lines(&self, host: &str, image: &str) -> Vec<(String, String)> {
        self.pulls
            .get(&(host.to_string(), image.to_string()))
            .map(|layers| {
                layers
                    .iter()
                    .map(|(id, e)| (id.clone(), line(host, image, e)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Forgets a finished pull.
    pub fn finish(&mut self, host: &str, image: &str) -> Vec<(String, String)> {
        let lines = self.lines(host, image);
        self.pulls.remove(&(host.to_string(), image.to_string()));
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: &str, status: &str, current: Option<u64>, total: Option<u64>) -> LayerProgress {
        LayerProgress {
            id: id.into(),
            status: status.into(),
            current,
            total,
        }
    }

    #[test]
    fn byte_counts_near_the_top_of_u64_do_not_overflow() {
        let e = ev(
            "0123456789ab",
            "Downloading",
            Some(u64::MAX),
            Some(u64::MAX),
        );
        assert!(line("h", "app:1", &e).contains("(100%)"));
    }

    #[test]
    fn one_line_per_layer_and_host_from_the_engines_events() {
        let mut v = PullView::default();
        let img = "registry.example/web:1.4.0";
        // What the engine sends for a two-layer image, as bollard gives it.
        assert_eq!(
            v.apply("a", img, &ev("1.4.0", "Pulling from web", None, None)),
            None
        );
        assert_eq!(
            v.apply(
                "a",
                img,
                &ev("3f4e1c2b9a7d", "Pulling fs layer", None, None)
            ),
            Some(format!("pull on a: 3f4e1c2b9a7d Pulling fs layer ({img})"))
        );
        v.apply("a", img, &ev("0123456789ab", "Waiting", None, None));
        assert_eq!(
            v.apply(
                "a",
                img,
                &ev(
                    "3f4e1c2b9a7d",
                    "Downloading",
                    Some(1_200_000),
                    Some(3_400_000)
                )
            ),
            Some(format!(
                "pull on a: 3f4e1c2b9a7d Downloading 1.2 MB / 3.4 MB (35%) ({img})"
            ))
        );
        // The same image on another host at the same time: lines of its own.
        v.apply(
            "b",
            img,
            &ev("3f4e1c2b9a7d", "Downloading", Some(999), Some(3_400_000)),
        );
        assert_eq!(
            v.lines("a", img),
            vec![
                (
                    "3f4e1c2b9a7d".to_string(),
                    format!("pull on a: 3f4e1c2b9a7d Downloading 1.2 MB / 3.4 MB (35%) ({img})")
                ),
                (
                    "0123456789ab".to_string(),
                    format!("pull on a: 0123456789ab Waiting ({img})")
                ),
            ]
        );
        assert_eq!(
            v.lines("b", img),
            vec![(
                "3f4e1c2b9a7d".to_string(),
                format!("pull on b: 3f4e1c2b9a7d Downloading 999 B / 3.4 MB (0%) ({img})")
            )]
        );
        v.apply("a", img, &ev("3f4e1c2b9a7d", "Pull complete", None, None));
        v.apply("a", img, &ev("0123456789ab", "Already exists", None, None));
        assert_eq!(
            v.apply("a", img, &ev("", "Digest: sha256:ab", None, None)),
            None
        );
        let done = v.finish("a", img);
        assert_eq!(
            done.iter().map(|(_, l)| l.as_str()).collect::<Vec<_>>(),
            [
                format!("pull on a: 3f4e1c2b9a7d Pull complete ({img})"),
                format!("pull on a: 0123456789ab Already exists ({img})"),
            ]
        );
        assert!(v.lines("a", img).is_empty());
        assert_eq!(v.lines("b", img).len(), 1, "b's pull goes on");
    }

    #[test]
    fn sizes_and_odd_events_stay_on_one_line() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(999), "999 B");
        assert_eq!(bytes(1_000), "1.0 kB");
        assert_eq!(bytes(27_263_000), "27.3 MB");
        assert_eq!(bytes(4_200_000_000), "4.2 GB");
        let l = line(
            "a",
            "x:1",
            &ev("3f4e1c2b9a7d", "Extracting\r\nmore", Some(5), Some(2)),
        );
        assert_eq!(
            l,
            "pull on a: 3f4e1c2b9a7d Extracting  more 2 B / 2 B (100%) (x:1)"
        );
        assert!(!is_layer(&ev("latest", "Pulling from x", None, None)));
        assert!(!is_layer(&ev("3F4E1C2B9A7Z", "x", None, None)));
    }
}
