//! `retrain`: the command line over the retrain library. Flags are declared in [`args`]; each
//! subcommand in [`commands`] calls the library and prints; errors become one line and an exit
//! code here: 1 for a failed command, 2 when ONNX Runtime is missing or unusable (as for a
//! command line clap refuses: nothing could run), 130 when interrupted.

mod args;
mod commands;

use clap::Parser;

fn main() {
    let cli = match args::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayVersion => std::process::exit(version()),
        Err(e) => e.exit(),
    };
    if let Err(e) = commands::run(cli) {
        // One readable line, never a panic trace. The library's errors already carry their
        // cause in their message, so the chain is not printed again.
        eprintln!("error: {e}");
        let interrupted = matches!(e.downcast_ref::<retrain::Error>(), Some(retrain::Error::Interrupted { .. }));
        let code = if interrupted {
            130
        } else if retrain_features::runtime_failed() {
            2
        } else {
            1
        };
        std::process::exit(code);
    }
}

/// `retrain --version`: this build's version and the ONNX Runtime it would load, so an
/// installation can be checked before a long run; exit code 2 when there is none.
fn version() -> i32 {
    println!("retrain {}", env!("CARGO_PKG_VERSION"));
    let found =
        retrain_features::runtime_library().and_then(|lib| retrain_features::runtime_check(&lib).map(|v| (lib, v)));
    match found {
        Ok((lib, v)) => {
            println!("ONNX Runtime {v} ({})", lib.display());
            0
        }
        Err(e) => {
            println!("ONNX Runtime: none");
            eprintln!("error: {e}");
            2
        }
    }
}
