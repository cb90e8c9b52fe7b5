use clap::Parser;

mod bench;
mod cli;
mod demo;

fn main() {
    let args = cli::Args::parse();
    if let Err(e) = cli::run(args.command) {
        let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
        eprintln!("error: {}", chain.join(": "));
        std::process::exit(1);
    }
}
