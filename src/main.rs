use std::process::ExitCode;

fn main() -> ExitCode {
    imgsim::run()
}
