use std::process::ExitCode;

use clap::Parser;

use cedargate::cli::{Cli, run};

/// Most of a decision's allocations are small and short-lived; mimalloc's
/// fast path costs a fraction of glibc's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    run(cli.command)
}
