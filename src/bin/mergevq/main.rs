mod cli;
mod commands;
mod progress;

use mergevq::train::interrupt::Interrupted;

/// Runs the command: an error prints one `error:` line and exits 1; a training run stopped by
/// Ctrl-C prints where its checkpoint is and exits 130.
fn main() {
    let args = cli::Args::parse();
    if let Err(e) = args.run() {
        if let Some(i) = e.downcast_ref::<Interrupted>() {
            eprintln!("note: {i}");
            std::process::exit(130);
        }
        let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
        eprintln!("error: {}", chain.join(": "));
        std::process::exit(1);
    }
}
