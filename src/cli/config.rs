//! `peerlet config check|show`: checks a configuration file, or prints the
//! configuration `peerlet daemon` would run with.

use super::CliError;
use crate::config::{choose_file, env_var, load, read_file, DaemonArgs, CONFIG_ENV, DEFAULT_FILE};
use argh::FromArgs;
use std::path::PathBuf;

#[derive(FromArgs, Debug)]
/// Check a configuration file, or show the effective configuration.
#[argh(subcommand, name = "config")]
pub struct ConfigArgs {
    #[argh(subcommand)]
    pub command: ConfigCommand,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum ConfigCommand {
    Check(CheckArgs),
    Show(ShowArgs),
}

#[derive(FromArgs, Debug)]
/// Check a configuration file: "FILE: ok" (exit 0), or one line per problem (exit 2).
#[argh(subcommand, name = "check")]
pub struct CheckArgs {
    /// the file (default: $PEERLET_CONFIG, else /etc/peerlet/peerlet.toml)
    #[argh(positional)]
    pub file: Option<PathBuf>,
}

#[derive(FromArgs, Debug)]
/// Print the configuration `peerlet daemon` would run with, as TOML: every key, with where its value came from (default, file, environment, command line).
#[argh(subcommand, name = "show")]
pub struct ShowArgs {
    /// options of `peerlet daemon` (--config FILE, --listen ADDR, ...) to take into account; --json prints JSON instead of TOML
    #[argh(positional, greedy)]
    pub options: Vec<String>,
}

/// `peerlet config check|show`.
pub fn run(a: ConfigArgs) -> Result<u8, CliError> {
    match a.command {
        ConfigCommand::Check(c) => {
            let given = c.file.is_some();
            let Some((path, via)) = choose_file(c.file.as_deref(), env_var(CONFIG_ENV)) else {
                return Err(CliError(format!(
                    "no configuration file to check: give one, or set {CONFIG_ENV} ({DEFAULT_FILE} does not exist)"
                )));
            };
            match read_file(&path, if given { "" } else { via }) {
                Ok(_) => {
                    println!("{}: ok", path.display());
                    Ok(0)
                }
                Err(problems) => {
                    for p in problems {
                        eprintln!("{p}");
                    }
                    Ok(2)
                }
            }
        }
        ConfigCommand::Show(s) => {
            // `--json` is ours; everything else is the daemon's.
            let json = s.options.iter().any(|o| o == "--json");
            let opts: Vec<&str> = s
                .options
                .iter()
                .map(String::as_str)
                .filter(|o| *o != "--json")
                .collect();
            let daemon = match DaemonArgs::from_args(&["peerlet config show"], &opts) {
                Ok(d) => d,
                Err(early) => {
                    return match early.status {
                        Ok(()) => {
                            // The daemon's options under `config show`'s own description.
                            let usage = early.output.split("\n\n").next().unwrap_or_default();
                            let options =
                                early.output.split_once("\nOptions:").map_or("", |(_, o)| o);
                            println!(
                                "{usage}\n\nPrint the configuration `peerlet daemon` would run with \
                                 (with these options, the environment and the file), as TOML: every \
                                 key, with where its value came from. With --json: one JSON object, \
                                 {{\"file\", \"keys\": {{NAME: {{\"value\", \"origin\", ...}}}}}}.\n\nOptions:{options}"
                            );
                            Ok(0)
                        }
                        Err(()) => Err(CliError(early.output.trim_end().replace('\n', " "))),
                    };
                }
            };
            match load(&daemon) {
                Ok(c) => {
                    // `config show | head` is not an error.
                    use std::io::Write;
                    let text = if json {
                        format!("{}\n", c.to_json())
                    } else {
                        c.to_toml()
                    };
                    let _ = std::io::stdout().lock().write_all(text.as_bytes());
                    Ok(0)
                }
                Err(problems) => {
                    for p in problems {
                        eprintln!("peerlet: {p}");
                    }
                    Ok(2)
                }
            }
        }
    }
}
