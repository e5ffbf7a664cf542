//! The commands, one file each: they parse nothing (clap does, see
//! [`crate::cli`]), call the library crates and print. This file runs the
//! parsed command line and turns errors into one line and an exit code.

pub mod bench;
pub mod check;
pub mod compact;
pub mod completions;
pub mod dups;
pub mod embed;
pub mod eval;
pub mod index;
pub mod info;
pub mod models;
pub mod query;
pub mod remove;
pub mod serve;
pub mod tag;
pub mod train;
pub mod train_head;

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;

use crate::cli::{Cli, Command};
use crate::config::Settings;
use crate::exit;

/// Parses the command line and runs it; prints an error once, on one line,
/// and exits with the code its kind calls for (see [`crate::exit`]).
pub fn run() -> ExitCode {
    // candle's CPU thread pool spins 25,000 times after every operation
    // before parking; on a 2-core machine the spinning worker steals the
    // core that gemm's threads need. Measured with `imgsim bench embed`
    // (batch 1): ResNet-18 26.5 -> 33.4 images/s, DINOv2-S 6.8 -> 8.2.
    // Set before any candle call (single-threaded here); an explicit
    // environment setting wins.
    if std::env::var_os("CANDLE_BARRIER_POOL_SPIN_LIMIT").is_none() {
        std::env::set_var("CANDLE_BARRIER_POOL_SPIN_LIMIT", "100");
    }
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve(_)) {
        restore_sigpipe();
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("IMGSIM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match execute(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {}", exit::describe(&e));
            ExitCode::from(exit::code(exit::kind_of(&e)))
        }
    }
}

/// Output piped into a program that stops reading (`imgsim query … | head`)
/// ends imgsim quietly, as it does other Unix tools, instead of a panic in
/// `println!`: Rust ignores SIGPIPE by default; this puts back the default
/// action. Not for `serve`: a client hanging up must stay an error on that
/// one connection, never a signal that ends the service.
fn restore_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called once, early in `run`, before any thread is started; setting a signal's disposition to SIG_DFL installs no handler
    // code, so no async-signal-safety requirement arises.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Runs a command; returns the process exit code.
fn execute(cli: Cli) -> Result<u8> {
    let quiet = cli.quiet;
    if let Command::Completions(args) = &cli.command {
        completions::run(args).context("writing the completion script")?;
        return Ok(exit::OK);
    }
    let settings = settings_for(&cli)?;
    let ok = |r: Result<()>| r.map(|()| exit::OK);
    // The collection commands go through a server that owns the data
    // directory (or the one --server names); the others never do.
    let opens_collection = matches!(
        cli.command,
        Command::Index(_)
            | Command::Query(_)
            | Command::Dups(_)
            | Command::Tag(_)
            | Command::Info(_)
            | Command::Check(_)
            | Command::Remove(_)
            | Command::Compact(_)
    );
    let remote = if opens_collection {
        crate::remote::connect(cli.server.as_deref(), &settings)?
    } else {
        None
    };
    let remote = remote.as_ref();
    match cli.command {
        Command::Index(args) => index::run(&args, &settings, quiet, remote),
        Command::Query(args) => ok(query::run(&args, &settings, remote)),
        Command::Serve(args) => ok(serve::run(&args, &settings)),
        Command::Dups(args) => ok(dups::run(&args, &settings, remote)),
        Command::Tag(args) => ok(tag::run(&args, &settings, quiet, remote)),
        Command::Info(args) => ok(info::run(&args, &settings, remote)),
        Command::Check(args) => check::run(&args, &settings, remote),
        Command::Remove(args) => ok(remove::run(&args, &settings, remote)),
        Command::Compact(args) => ok(compact::run(&args, &settings, quiet, remote)),
        Command::Embed(args) => ok(embed::run(&args, &settings)),
        Command::Models => {
            models::run();
            Ok(exit::OK)
        }
        Command::Config => {
            print!("{}", settings.to_toml().context("serialising settings")?);
            Ok(exit::OK)
        }
        Command::Bench(cmd) => ok(bench::run(cmd, &settings, !quiet)),
        Command::Train(train::TrainCommand::Autoencoder(args)) => {
            ok(train::autoencoder(&args, &settings, !quiet))
        }
        Command::Train(train::TrainCommand::Head(args)) => {
            ok(train_head::run(&args, &settings, !quiet))
        }
        Command::Eval(args) => ok(eval::run(&args, &settings, !quiet)),
        Command::Completions(_) => Ok(exit::OK),
    }
}

/// Settings after the config file, the environment and the global flags,
/// validated; configures the global thread pool.
fn settings_for(cli: &Cli) -> Result<Settings> {
    let mut settings = Settings::load(cli.config.as_deref())?;
    if let Some(d) = &cli.data_dir {
        settings.data_dir = d.clone();
    }
    if let Some(t) = cli.threads {
        settings.threads = t;
    }
    if settings.threads > 0 {
        rayon::ThreadPoolBuilder::new()
            .num_threads(settings.threads)
            .build_global()
            .context("configuring the thread pool")?;
    }
    Ok(settings)
}
