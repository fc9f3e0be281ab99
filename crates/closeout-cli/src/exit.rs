//! Exit statuses, as `timeout(1)` and `env(1)` use them, and closeout's own errors.

/// The command ran past `--timeout`.
pub(crate) const TIMEOUT_STATUS: i32 = 124;
/// closeout itself failed.
pub(crate) const OWN_FAILURE: i32 = 125;
/// The command was found but cannot be executed.
pub(crate) const NOT_EXECUTABLE: i32 = 126;
/// The command was not found.
pub(crate) const NOT_FOUND: i32 = 127;
/// `--fail-on-leak`: the command succeeded but left something behind. Outside 124–127 and
/// 128+n, so it cannot be mistaken for a timeout, a closeout failure or a signal.
pub(crate) const LEAK_STATUS: i32 = 100;

/// A failure of closeout itself: one line, an optional hint, and a status.
#[derive(Debug)]
pub(crate) struct CliError {
    message: String,
    hint: Option<String>,
    status: i32,
}

impl CliError {
    pub(crate) fn new(message: impl Into<String>) -> CliError {
        CliError { message: message.into(), hint: None, status: OWN_FAILURE }
    }

    pub(crate) fn hint(mut self, hint: impl Into<String>) -> CliError {
        self.hint = Some(hint.into());
        self
    }

    pub(crate) fn status(&self) -> i32 {
        self.status
    }

    pub(crate) fn with_status(mut self, status: i32) -> CliError {
        self.status = status;
        self
    }

    pub(crate) fn get_hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}
