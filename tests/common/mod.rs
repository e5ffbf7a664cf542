//! The small harness the end-to-end tests share: run the `imgsim` binary in
//! a folder with a clean environment, and read what it printed.

use std::path::Path;
use std::process::{Command, Output};

/// Runs `imgsim ARGS` in `cwd`, with the collection and config environment
/// cleared and the Hugging Face Hub offline (cache under `cwd`).
#[allow(dead_code)] // not every test binary uses it
pub fn imgsim(args: &[&str], cwd: &Path) -> Output {
    command(args, cwd).output().expect("imgsim runs")
}

/// The command [`imgsim`] runs, to add environment or spawn it.
#[allow(dead_code)] // not every test binary spawns
pub fn command(args: &[&str], cwd: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_imgsim"));
    c.args(args)
        .current_dir(cwd)
        .env_remove("IMGSIM_DATA_DIR")
        .env_remove("IMGSIM_CONFIG")
        .env_remove("IMGSIM_COLLECTION")
        .env_remove("IMGSIM_LOG")
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_HOME", cwd.join("hf-home"));
    c
}

/// stdout then stderr, as text.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
