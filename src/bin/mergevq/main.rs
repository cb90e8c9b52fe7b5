mod cli;
mod commands;
mod heap;
mod panic_hook;
mod progress;

use mergevq::train::interrupt::Interrupted;

/// Runs the command: an error prints one `error:` line and exits 1; a training run stopped by
/// Ctrl-C prints where its checkpoint is and exits 130.
fn main() {
    heap::keep_freed_blocks();
    panic_hook::install();
    fault_panic();
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

/// Fault injection for tests of the panic hook: `MERGEVQ_FAULT_PANIC=main` panics on the main
/// thread, `MERGEVQ_FAULT_PANIC=thread` on another one.
fn fault_panic() {
    match std::env::var("MERGEVQ_FAULT_PANIC").as_deref() {
        Ok("main") => panic!("injected fault (MERGEVQ_FAULT_PANIC=main)"),
        Ok("thread") => {
            let worker = std::thread::spawn(|| panic!("injected fault (MERGEVQ_FAULT_PANIC=thread)"));
            let _ = worker.join();
            std::process::exit(0);
        }
        _ => {}
    }
}
