//! The `tandem` binary: parses arguments, loads config, runs a component. All behaviour lives
//! in the library crates; this crate only wires them together and prints.

mod cmd;
mod logging;
mod signals;

use clap::Parser;

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
