//! `kiln`: the command line over kiln's libraries (see `shared/specs/cli.md` for the contract).
//! Errors are printed as `error: <model>: <what>` lines on stderr with a non-zero exit; nothing
//! here panics on bad input, and written files appear whole or not at all.

mod args;
mod bench;
mod conformance;
mod default_model;
mod demo;
mod generate;
mod inspect;
mod npy;
mod optimize;
mod partition;
mod pbdata;
mod report;
mod run;
mod serve;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

use args::{Cli, Command};

/// glibc hands large blocks (above 128 KiB at first) straight to mmap and back to the kernel
/// on free, so every run of a model pays page faults on fresh tensors, about a tenth of a
/// transformer's run time. Kept in the heap instead, freed blocks are reused by the next run.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator thresholds; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
    }
}

fn main() -> ExitCode {
    keep_freed_memory();
    // `kiln --version` also names the integer kernels' variant (tests say which one ran).
    let long = format!(
        "{} (integer kernels: {})",
        env!("CARGO_PKG_VERSION"),
        kiln_ops::integer_kernels()
    );
    let long: &'static str = Box::leak(long.into_boxed_str());
    let cli = match Cli::from_arg_matches(&Cli::command().long_version(long).get_matches()) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    // Headless: with no session directory, some Vulkan drivers' window-system code prints
    // "error: XDG_RUNTIME_DIR is invalid" when the wgpu provider opens them. Set while the
    // process is still single-threaded, and only when the environment leaves it unset.
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir());
    }
    // A bug must still end as an `error:` line, not a backtrace in the middle of JSON output.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("error: internal error (a bug in kiln): {info}");
    }));
    let result = std::panic::catch_unwind(|| run(cli));
    match result {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            for line in format!("{e:#}").lines() {
                eprintln!("error: {line}");
            }
            ExitCode::FAILURE
        }
        Err(_) => ExitCode::from(101),
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Inspect(a) => inspect::run(a),
        Command::Optimize(a) => optimize::run(a),
        Command::Run(a) => run::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Demo(a) => demo::run(a),
        Command::Partition(a) => partition::run(a),
        Command::Conformance(a) => conformance::run(a),
        Command::Serve(a) => serve::run(a),
        Command::Generate(a) => generate::run(a),
    }
}
