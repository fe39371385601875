//! The `gantry` binary: everything happens in `gantry::cli::run`; here only the process
//! edges. Views always emit ANSI styles; `anstream` strips them per stream when that stream
//! is not a terminal, or when NO_COLOR is set. The streams are not locked for the life of
//! the process: progress is drawn from other threads.

use std::io;

fn main() {
    let mut out = anstream::AutoStream::auto(io::stdout());
    let mut err = anstream::AutoStream::auto(io::stderr());
    let status = gantry::cli::run(std::env::args_os(), &mut out, &mut err, true);
    std::process::exit(status.code());
}
