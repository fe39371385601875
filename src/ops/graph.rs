//! `gantry graph`: the dependency graph as Graphviz DOT.

use std::io::Write;

use super::{Common, Error, emit, load};
use crate::graph::ResourceGraph;

pub fn graph(common: &Common, out: &mut dyn Write) -> Result<(), Error> {
    let loaded = load(common)?;
    emit(
        out,
        &ResourceGraph::from_model(&loaded.model).to_dot(&loaded.model.project),
    )
}
