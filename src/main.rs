//! The `gantry` binary: everything happens in `gantry::cli::run`; here only the process
//! edges. Views always emit ANSI styles; `anstream` strips them per stream when that stream
//! is not a terminal, or when NO_COLOR is set.

use std::io;

fn main() {
    let mut out = anstream::AutoStream::auto(io::stdout().lock());
    let mut err = anstream::AutoStream::auto(io::stderr().lock());
    let status = gantry::cli::run(std::env::args_os(), &mut out, &mut err, true);
    std::process::exit(status.code());
}
