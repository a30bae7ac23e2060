//! Client subcommands: each talks to a running daemon through the control API.

use crate::cli::CliError;
use argh::FromArgs;

#[derive(FromArgs, Debug)]
/// Add a torrent (.torrent file or magnet link) to the running daemon.
#[argh(subcommand, name = "add")]
pub struct AddArgs {
    /// a .torrent file or a magnet link
    #[argh(positional)]
    pub source: String,
    /// download directory: the data goes to DIR/<name> (default: the daemon's)
    #[argh(option, short = 'd')]
    pub dir: Option<std::path::PathBuf>,
    /// a peer to connect to, host:port (repeatable)
    #[argh(option)]
    pub peer: Vec<String>,
    /// address of the daemon's control API
    #[argh(option, default = "super::DEFAULT_API_ADDR.to_string()")]
    pub api: String,
}

pub fn run_add(a: AddArgs) -> Result<u8, CliError> {
    let _ = a;
    Err(CliError("'add' is not implemented yet".into()))
}
