//! `closeout`: run any program under guaranteed cleanup, and see what it left behind.
//!
//! ```text
//! closeout run --fail-on-leak -- pytest -x        # in CI: fail when the tests leak
//! closeout reap                                   # what SIGKILLed owners left, removed
//! closeout ls                                     # owners in the journal, alive or dead
//! ```
//!
//! Exit statuses: the command's own; `128 + n` if signal `n` killed it; 124 when `--timeout`
//! stopped it; 125 for closeout's own failures; 126 when the command cannot be executed, 127
//! when it is not found; [`LEAK_STATUS`](exit::LEAK_STATUS) (100) when `--fail-on-leak` and
//! the command succeeded but left something behind.

mod exit;
mod leftovers;
mod reap;
mod report;
mod run;
mod zombies;

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// Run a program contained, and report and remove whatever it left behind.
///
/// In CI, put `closeout run --fail-on-leak --` in front of a test command: the run fails with
/// status 100 and a readable report when the tests leave processes, listening sockets or temp
/// files behind, and nothing is left behind either way.
#[derive(Parser, Debug)]
#[command(name = "closeout", version, about, long_about = None, after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

const EXAMPLES: &str = "Examples:
  closeout run --fail-on-leak -- cargo test     fail (status 100) if the tests leak
  closeout run --timeout 10m --json out.json -- npm test
  closeout reap --dry-run                       what dead owners left, changing nothing
  closeout ls                                   owners in the journal

Exit status of `closeout run`: the command's own; 128+n if signal n killed it; 124 when
--timeout stopped it; 125 when closeout itself failed; 126 when the command cannot be
executed; 127 when it is not found; 100 with --fail-on-leak when it succeeded but left
something behind.";

#[derive(Subcommand, Debug)]
enum Command {
    /// Run CMD in its own cgroup with a private TMPDIR; when it ends, report and remove what
    /// it left behind.
    Run(RunArgs),
    /// Reap what dead owners left behind (their journal records): kill their process trees,
    /// remove their files, run their recorded commands.
    Reap(ReapArgs),
    /// List the owners in the journal, alive or dead, and their records.
    Ls(LsArgs),
}

/// Options of `closeout run`.
#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Stop the command when this passes (e.g. `90s`, `10m`) and exit with status 124.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    timeout: Option<Duration>,
    /// Time between SIGTERM and SIGKILL when stopping what is left.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "2s")]
    grace: Duration,
    /// Exit with status 100 if the command succeeded but left something behind.
    #[arg(long)]
    fail_on_leak: bool,
    /// Keep what matches instead of removing it: `pid:N`, `port:N`, `cmd:TEXT` (a process whose
    /// command line contains TEXT), `path:PREFIX` (files under a watched directory).
    #[arg(long, value_name = "WHAT", value_parser = parse_keep)]
    keep: Vec<report::Keep>,
    /// Also report (and remove) files created under DIR during the run. Repeatable.
    #[arg(long, value_name = "DIR")]
    watch: Vec<PathBuf>,
    /// Write the report as JSON (schema: `closeout-cli/schema/report-v1.json`).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Print the report even when nothing was left behind.
    #[arg(long, short)]
    verbose: bool,
    /// Forward signals to every process of the tree, not only to the command.
    #[arg(long)]
    signal_tree: bool,
    /// Do not use a cgroup (the fallback: process group and environment marker).
    #[arg(long)]
    no_cgroup: bool,
    /// Do not record the run in the journal (a SIGKILL of closeout then leaves the tree for
    /// nobody to reap).
    #[arg(long)]
    no_journal: bool,
    /// The command and its arguments.
    #[arg(required = true, last = true, value_name = "CMD")]
    command: Vec<OsString>,
}

/// Options of `closeout reap`.
#[derive(clap::Args, Debug)]
struct ReapArgs {
    /// Report what would be reaped, and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Write the report as JSON.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

/// Options of `closeout ls`.
#[derive(clap::Args, Debug)]
struct LsArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{e} (try `30s`, `500ms` or `10m`)"))
}

fn parse_keep(text: &str) -> Result<report::Keep, String> {
    text.parse()
}

fn main() {
    // A usage error is closeout's own failure (125, as `timeout(1)` does); help and version
    // print and exit 0.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { exit::OWN_FAILURE } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    let status = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Reap(args) => reap::reap(&args.json, args.dry_run),
        Command::Ls(args) => reap::ls(args.json),
    };
    match status {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("closeout: {e}");
            if let Some(hint) = e.get_hint() {
                eprintln!("  hint: {hint}");
            }
            std::process::exit(e.status());
        }
    }
}
