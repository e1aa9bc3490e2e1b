//! `hookyard`: see the library for the commands.

fn main() -> std::process::ExitCode {
    hookyard_cli::main()
}
