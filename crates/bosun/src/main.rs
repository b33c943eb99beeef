//! `bosun`: the one binary of the Bosun service mesh.

mod check;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "bosun",
    version,
    about = "A service mesh that speaks Istio's API"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// One line per finding: `PATH:LINE:COL: error[CODE]: MESSAGE (at FIELD)`.
    Text,
    /// A JSON array of findings with keys path, line, column, severity, code, message, field.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check Istio YAML resource by resource, with Istio's admission rules.
    ///
    /// Exit status: 0 no errors (warnings allowed), 1 errors found, 2 a path could not be read.
    Validate {
        /// Files or directories (searched for *.yaml, *.yml, *.json); `-` reads standard input.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        #[arg(long, short, value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
    },
    /// Validate, then check resources against each other like `istioctl analyze`.
    ///
    /// Exit status: 0 no errors (warnings allowed), 1 errors found, 2 a path could not be read.
    Analyze {
        /// Files or directories (searched for *.yaml, *.yml, *.json); `-` reads standard input.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// A mesh file listing services and workloads (see README): hosts and gateway workloads it
        /// defines count as existing.
        #[arg(long)]
        registry: Option<PathBuf>,
        #[arg(long, short, value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate { paths, output } => check::run(&paths, None, false, output),
        Command::Analyze {
            paths,
            registry,
            output,
        } => check::run(&paths, registry.as_deref(), true, output),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bosun: {e:#}");
            ExitCode::from(2)
        }
    }
}
