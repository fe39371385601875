//! `gantry validate`: is the configuration well-formed? Every problem at once, exit 0 or 1.

use std::io::Write;

use super::{Common, Error, display_path, emit, load};
use crate::graph::ResourceGraph;

pub fn validate(common: &Common, out: &mut dyn Write) -> Result<(), Error> {
    let loaded = load(common)?;
    let m = &loaded.model;
    let waves = ResourceGraph::from_model(m).waves().len();
    let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
    emit(
        out,
        &format!(
            "{} is valid: project `{}`, {}, {}, {}, {} of dependencies.\n",
            display_path(&common.config),
            m.project,
            plural(m.services.len(), "service"),
            plural(m.lbs.len(), "load balancer"),
            plural(m.hosts.len(), "host"),
            plural(waves, "wave"),
        ),
    )
}
