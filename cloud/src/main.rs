#![forbid(unsafe_code)]

#[tokio::main]
async fn main() -> std::process::ExitCode {
    latchkey_cloud::cli::main().await
}
