mod cli;
mod commands;
mod progress;

fn main() {
    let args = cli::Args::parse();
    if let Err(e) = args.run() {
        let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
        eprintln!("error: {}", chain.join(": "));
        std::process::exit(1);
    }
}
