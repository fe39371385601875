//! Per-layer pull progress on a terminal: one line per layer and host, drawn by indicatif,
//! while pre-flight pulls (on several hosts at once). The lines are
//! [`render::pull`](crate::render::pull)'s; this file only owns the bars. A finished pull's
//! lines stay on screen with their last status. Used only when stderr is a terminal and the
//! progress is the human one (`--progress auto`); nothing is shown otherwise.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::ports::{LayerProgress, PullObserver};
use crate::render::pull::PullView;

type Key = (String, String, String);

pub struct PullBars {
    multi: indicatif::MultiProgress,
    state: Mutex<(PullView, BTreeMap<Key, indicatif::ProgressBar>)>,
}

impl PullBars {
    /// Bars on stderr when it is a terminal and `progress` is `auto`; else `None`.
    pub fn for_terminal(progress: crate::engine::report::ProgressFormat) -> Option<Arc<PullBars>> {
        use std::io::IsTerminal;
        (progress == crate::engine::report::ProgressFormat::Auto && std::io::stderr().is_terminal())
            .then(|| {
                Arc::new(PullBars {
                    multi: indicatif::MultiProgress::new(),
                    state: Mutex::new(Default::default()),
                })
            })
    }
}

impl PullObserver for PullBars {
    fn event(&self, host: &str, image: &str, e: &LayerProgress) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (view, bars) = &mut *state;
        let Some(line) = view.apply(host, image, e) else {
            return;
        };
        let key = (host.to_string(), image.to_string(), e.id.clone());
        let bar = bars.entry(key).or_insert_with(|| {
            let bar = self.multi.add(indicatif::ProgressBar::new_spinner());
            if let Ok(style) = indicatif::ProgressStyle::with_template("  {wide_msg}") {
                bar.set_style(style);
            }
            bar
        });
        bar.set_message(line);
    }

    fn finished(&self, host: &str, image: &str) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (view, bars) = &mut *state;
        for (id, line) in view.finish(host, image) {
            if let Some(bar) = bars.remove(&(host.to_string(), image.to_string(), id)) {
                bar.finish_with_message(line);
            }
        }
    }
}
