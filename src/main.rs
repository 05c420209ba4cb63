use std::process::ExitCode;

use clap::Parser;

use cedargate::cli::{Cli, run_tool};

fn main() -> ExitCode {
    let cli = Cli::parse();
    run_tool(cli.command)
}
