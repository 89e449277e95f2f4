//! `tellify config check [FILE]`: reads a configuration offline, as `serve` would, and
//! lists every problem with its key.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::output::print_line;

#[derive(Args, Debug)]
pub struct ConfigArgs {
    #[command(subcommand)]
    command: ConfigCommand,
}

#[derive(Subcommand, Debug)]
enum ConfigCommand {
    /// Check a configuration without starting anything: the file (default ./tellify.toml
    /// if present) and the TELLIFY_ environment variables, every problem with its key.
    Check {
        /// The configuration file to check.
        file: Option<PathBuf>,
    },
}

pub async fn run(args: ConfigArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        ConfigCommand::Check { file } => match crate::config::check(file.as_deref()) {
            Ok(settings) => {
                let source = match crate::config::config_file(file.as_deref()) {
                    Some(path) => path.display().to_string(),
                    None => "the defaults".to_string(),
                };
                print_line(&format!(
                    "{source} is valid: tellify would listen on {} and keep its data in {}",
                    settings.listen,
                    settings.data.display()
                ))?;
                Ok(ExitCode::SUCCESS)
            }
            Err(problems) => {
                eprintln!(
                    "{} problem{}:",
                    problems.len(),
                    if problems.len() == 1 { "" } else { "s" }
                );
                for problem in problems {
                    eprintln!("  - {problem}");
                }
                Ok(ExitCode::FAILURE)
            }
        },
    }
}
