//! The `tandem` binary: parses arguments, loads config, runs a component. All behaviour lives
//! in the library crates; this crate only wires them together and prints.

// Doc comments on the clap commands are the `--help` text, where `[dns]` names a config
// section, not an intra-doc link.
#![allow(rustdoc::broken_intra_doc_links)]

mod cmd;
mod logging;
mod signals;

use clap::Parser;

// The proxy allocates and frees small buffers per request; mimalloc's thread-local free lists
// cut that cost by half against glibc's malloc (bench/edge/run.sh).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = cmd::Cli::parse();
    logging::init(&cli.log);
    match cmd::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}
