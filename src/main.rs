use std::process::ExitCode;

use clap::Parser;

use cedargate::cli::{Cli, run};

fn main() -> ExitCode {
    let cli = Cli::parse();
    run(cli.command)
}
