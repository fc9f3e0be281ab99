//! `closeout reap` and `closeout ls`: the journal's reap and list, with their reports.

use std::path::PathBuf;

use closeout_journal::{FileStore, ReapOptions, default_state_dir};

use crate::exit::CliError;

fn store() -> Result<FileStore, CliError> {
    let dir = default_state_dir();
    FileStore::open(&dir).map_err(|e| {
        CliError::new(format!("cannot open the journal: {e}"))
            .hint("set CLOSEOUT_STATE_DIR to a directory of yours")
    })
}

fn write_json(path: &std::path::Path, value: &impl serde::Serialize) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| CliError::new(format!("JSON: {e}")))?;
    std::fs::write(path, text + "\n").map_err(|e| CliError::new(format!("writing {}: {e}", path.display())))
}

/// Reaps dead owners; status 0 when every record was reaped, 1 when one failed.
pub(crate) fn reap(json: &Option<PathBuf>, dry_run: bool) -> Result<i32, CliError> {
    let store = store()?;
    let opts = ReapOptions::new()
        .dry_run(dry_run)
        .handler(closeout_fs::TRANSACTION_KIND, closeout_fs::reap_transactions);
    let report = closeout_journal::reap(&store, &opts).map_err(|e| CliError::new(format!("reap: {e}")))?;
    eprint!("{report}");
    if let Some(path) = json {
        write_json(path, &report)?;
    }
    Ok(if report.is_success() { 0 } else { 1 })
}

/// Lists the journal's owners.
pub(crate) fn ls(json: bool) -> Result<i32, CliError> {
    let store = store()?;
    let owners = closeout_journal::list(&store).map_err(|e| CliError::new(format!("ls: {e}")))?;
    if json {
        let text = serde_json::to_string_pretty(&owners).map_err(|e| CliError::new(format!("JSON: {e}")))?;
        println!("{text}");
        return Ok(0);
    }
    if owners.is_empty() {
        println!("no owners in {}", store.dir().display());
    }
    for o in &owners {
        let who = o.owner.as_ref().map_or_else(
            || "unknown".to_owned(),
            |h| format!("pid {} — {}", h.owner.pid, h.cmdline.join(" ")),
        );
        let age = o.age_ms.map_or_else(String::new, |ms| format!(", {:.0}s old", ms as f64 / 1000.0));
        println!(
            "{} ({}{age}, {} record(s)): {who}",
            o.key.0,
            if o.alive { "alive" } else { "DEAD" },
            o.records.len()
        );
        for r in &o.records {
            println!("  #{} {}", r.id, serde_json::to_string(&r.resource).unwrap_or_default());
        }
    }
    Ok(0)
}
