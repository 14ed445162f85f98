//! `retrain`: the command line over the retrain library. Flags are declared in [`args`]; each
//! subcommand in [`commands`] calls the library and prints; errors become one line and an exit
//! code here.

mod args;
mod commands;

use clap::Parser;

fn main() {
    let cli = args::Cli::parse();
    if let Err(e) = commands::run(cli) {
        // One readable line, never a panic trace. The library's errors already carry their
        // cause in their message, so the chain is not printed again.
        eprintln!("error: {e}");
        let interrupted = matches!(e.downcast_ref::<retrain::Error>(), Some(retrain::Error::Interrupted { .. }));
        std::process::exit(if interrupted { 130 } else { 1 });
    }
}
