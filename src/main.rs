//! The `peerlet` binary: parse the command line, run it, map the result to
//! an exit status (0 ok, 1 verification mismatch, 2 usage or input error).

use std::process::ExitCode;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args = match peerlet::cli::parse_env() {
        Ok(args) => args,
        Err(code) => return ExitCode::from(code),
    };
    match peerlet::cli::run(args) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("peerlet: {e}");
            ExitCode::from(2)
        }
    }
}
