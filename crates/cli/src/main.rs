//! `whosin`: the command-line entry point.
//!
//! `whosin serve` runs the Pusher-compatible presence server. Later
//! subcommands (join, watch, sign, trigger, bench) build on the same binary.

mod bench;
mod join;
mod serve;

use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::process::ExitCode;

/// whosin — who's online, in real time, over the Pusher protocol.
#[derive(Debug, Parser)]
#[command(name = "whosin", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a Pusher-compatible presence server (WebSocket, REST API, auth endpoint, metrics).
    // Boxed: the server's options outweigh every other command's.
    Serve(Box<serve::ServeArgs>),
    /// Join a presence channel as a visitor and print what happens (--json: one object per line).
    Join(join::JoinArgs),
    /// Join a presence channel and show the live list, redrawn in place.
    Watch(join::JoinArgs),
    /// Load-test a Pusher-protocol server (loopback only by default).
    #[command(subcommand)]
    Bench(bench::Bench),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The server logs what it does; a visitor's terminal shows only errors
    // beyond its own output.
    init_logging(match cli.command {
        Command::Serve(_) => "info",
        _ => "error",
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve::run(*args).await,
            Command::Join(args) => join::run(args, false).await,
            Command::Watch(args) => join::run(args, true).await,
            Command::Bench(b) => bench::run(b).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            let code = e
                .downcast_ref::<join::Exit>()
                .map_or(join::exit::OTHER, |x| x.code);
            ExitCode::from(code)
        }
    }
}

/// Logs go to stderr (stdout carries the `listening on` line); the level
/// comes from `WHOSIN_LOG` (e.g. `debug`, `whosin_server=trace`), else `default`.
fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WHOSIN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
