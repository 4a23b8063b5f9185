//! The `tandem` binary: parses the command line, loads the configuration (bad configuration exits
//! with 64 and a message naming the key) and runs the chosen command: `serve` runs [`app::serve`]
//! until a signal.

use std::process::ExitCode;

use tandem::cli::{self, Cli, Command};
use tandem::{app, logging};

/// mimalloc rather than the system allocator: a call allocates and frees many small buffers
/// across threads (SIP messages, webhook parameters, task state), and with mimalloc (and
/// [`no_huge_pages`]) Tandem spends 8–16 % less CPU per call in `bench/calls.sh`, with a
/// lower post-dial delay tail and RSS (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Transparent huge pages off for the process, first thing. mimalloc asks for them on its
/// arenas (`MADV_HUGEPAGE`), and the first touch of each 2 MiB page zeroes all of it on the
/// thread that allocates, in the middle of some call's signalling: measured, that doubled the
/// post-dial delay's p99. Best effort: a kernel that refuses keeps its own policy.
#[cfg(target_os = "linux")]
fn no_huge_pages() {
    if let Err(error) = rustix::thread::disable_transparent_huge_pages(true) {
        eprintln!("tandem: could not turn transparent huge pages off: {error}");
    }
}

#[cfg(not(target_os = "linux"))]
fn no_huge_pages() {}

fn main() -> ExitCode {
    no_huge_pages();
    let cli = Cli::parse_or_exit();
    match &cli.command {
        Command::CheckConfig(args) => {
            cli::check_config(&args.file, &mut std::io::stdout(), &mut std::io::stderr())
        }
        Command::Token(args) => cli::token(args, &mut std::io::stdout(), &mut std::io::stderr()),
        Command::Serve(args) => {
            let config = match cli::load_for_serve(&cli, args) {
                Ok(config) => config,
                Err(status) => return status,
            };
            logging::init(config.log.format);
            tracing::info!(config = ?config.source, "configuration loaded");
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(runtime) => runtime,
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the async runtime");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(app::serve(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = format!("{e:#}"), "tandem stopped");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
