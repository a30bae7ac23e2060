//! The `peerlet` binary: parse the command line, run it, map the result to
//! an exit status (0 ok, 1 verification mismatch, 2 usage or input error).

use std::process::ExitCode;

fn main() -> ExitCode {
    peerlet::systemd::init_logging();
    let args = match peerlet::cli::parse_env() {
        Ok(args) => args,
        Err(code) => return ExitCode::from(code),
    };
    match peerlet::cli::run(args) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            // Under journald, keep the error's level (sd-daemon prefix).
            let prefix = if peerlet::systemd::stderr_is_journal() {
                "<3>"
            } else {
                ""
            };
            eprintln!("{prefix}peerlet: {e}");
            ExitCode::from(2)
        }
    }
}
