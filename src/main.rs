//! The `denorm` command line: run products, try the demo, check and explain product files,
//! generate test data and verify output topics.

mod cli;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cli::main()
}
