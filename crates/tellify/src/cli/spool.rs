//! `tellify spool`: shows and drains a producer's disk spool (`tellify send --spool DIR`,
//! or any producer built on `tellify-client`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use tellify_client::{SpoolStatus, DEFAULT_MAX_SPOOL_BYTES, DEFAULT_REPLAY_BATCH};

use super::output::{key_values, print};
use super::Connection;

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  tellify spool status --spool /var/spool/tellify-build
  tellify spool replay --spool /var/spool/tellify-build")]
pub struct SpoolArgs {
    #[command(flatten)]
    connection: Connection,
    /// The spool directory.
    #[arg(long, env = "TELLIFY_SPOOL", value_name = "DIR", global = true)]
    spool: Option<PathBuf>,
    #[command(subcommand)]
    command: SpoolCommand,
}

#[derive(clap::Subcommand, Debug)]
enum SpoolCommand {
    /// How many events wait in the spool, their size and the oldest one's time. Reads
    /// without locking, so it works on the spool of a running producer.
    Status,
    /// Send everything in the spool to the server, oldest first, and empty it. Events
    /// the server already has (sent before a crash) are not stored twice.
    Replay {
        /// Events per request.
        #[arg(
            long,
            default_value_t = DEFAULT_REPLAY_BATCH,
            value_name = "N",
            value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=10_000)
        )]
        batch: usize,
    },
}

pub async fn run(args: SpoolArgs) -> anyhow::Result<ExitCode> {
    let Some(dir) = args.spool else {
        anyhow::bail!("no spool directory: pass --spool DIR or set TELLIFY_SPOOL");
    };
    match args.command {
        SpoolCommand::Status => {
            let status = tellify_client::read_spool_status(&dir)?;
            print(&describe(&status))?;
        }
        SpoolCommand::Replay { batch } => {
            let client = super::send::producer(
                &args.connection,
                Some(&dir),
                DEFAULT_MAX_SPOOL_BYTES,
                Some(batch),
            )?;
            let started = Instant::now();
            let report = client.replay().await?;
            let seconds = started.elapsed().as_secs_f64();
            let mut line = format!(
                "replayed {} events in {seconds:.1} s ({} already stored)",
                report.replayed, report.duplicates
            );
            if report.rejected > 0 {
                line.push_str(&format!(
                    "; {} refused by the server, kept in {}",
                    report.rejected,
                    dir.join("rejected.ndjson").display()
                ));
            }
            line.push('\n');
            print(&line)?;
            if let Some(status) = client.spool_status().await? {
                print(&describe(&status))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn describe(status: &SpoolStatus) -> String {
    let oldest = match status.oldest {
        Some(time) => super::output::local_time(&time.to_string()),
        None => "-".to_string(),
    };
    key_values(&[
        ("spool", status.dir.display().to_string()),
        ("pending", format!("{} events", status.pending_events)),
        ("bytes", status.pending_bytes.to_string()),
        ("oldest", oldest),
        ("rejected", format!("{} events", status.rejected_events)),
    ])
}
