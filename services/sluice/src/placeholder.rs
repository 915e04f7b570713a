//! Subcommands that later work fills in. Each one refuses to run, says so
//! plainly and exits non-zero, so nobody mistakes it for a working role.

use std::process::ExitCode;

use crate::cli::{AdminCommand, Command};

/// Exit code of a subcommand that is not built yet (EX_UNAVAILABLE).
const NOT_BUILT: u8 = 69;

/// Prints which issue builds `command` and returns a failing exit code.
pub fn refuse(command: &Command) -> ExitCode {
    let (name, issue) = describe(command);
    eprintln!(
        "error: `sluice {name}` is not built yet (tracked in issue #{issue}). \
         Nothing was started. See docs/architecture.md for what it will do."
    );
    ExitCode::from(NOT_BUILT)
}

fn describe(command: &Command) -> (&'static str, u32) {
    match command {
        Command::Dev(_) => ("dev", 6),
        Command::Demo(_) => ("demo", 6),
        Command::Control(_) => ("control", 6),
        Command::Admin(admin) => (admin_name(admin), 6),
        // Built commands never reach here (see main::dispatch).
        _ => ("this command", 0),
    }
}

fn admin_name(admin: &AdminCommand) -> &'static str {
    match admin {
        AdminCommand::Pool => "admin pool",
        AdminCommand::Ip => "admin ip",
        AdminCommand::Warmup => "admin warmup",
        AdminCommand::Site => "admin site",
        AdminCommand::Tenant => "admin tenant",
        AdminCommand::Suppression => "admin suppression",
    }
}
