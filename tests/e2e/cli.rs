//! The `hookyard` command line, built inside the test package so the end-to-end tests can run
//! it as a real process (`CARGO_BIN_EXE_hookyard-e2e-cli`): the same code as `hookyard`.

fn main() -> std::process::ExitCode {
    hookyard_cli::main()
}
