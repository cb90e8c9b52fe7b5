//! What a panic that reaches the top looks like: one `error:` line saying it is a bug in
//! mergevq, with the panic's message and place, and exit code 101. With `RUST_BACKTRACE` set
//! (and not `0`) the backtrace follows, for developers. Panics of third-party decoders inside
//! [`guarded_decode`](mergevq::io::guard::guarded_decode) become errors and print nothing here.
use mergevq::io::guard::{in_guarded_decode, panic_message};
use std::panic::PanicHookInfo;
use std::sync::atomic::{AtomicBool, Ordering};

/// The exit code of a bug (Rust's own for a panic).
const BUG_EXIT: i32 = 101;

/// Installs the hook. A panic on the main thread unwinds (destructors run) and exits 101; one
/// on another thread ends the process with 101 at once, so it cannot be lost with its thread.
pub fn install() {
    std::panic::set_hook(Box::new(|info| {
        if in_guarded_decode() {
            return;
        }
        static REPORTED: AtomicBool = AtomicBool::new(false);
        if !REPORTED.swap(true, Ordering::SeqCst) {
            eprintln!("error: internal error (a bug in mergevq, please report it): {}", describe(info));
            if backtrace_wanted() {
                eprintln!("{}", std::backtrace::Backtrace::force_capture());
            }
        }
        if std::thread::current().name() != Some("main") {
            std::process::exit(BUG_EXIT);
        }
    }));
}

/// `<message> at <file:line>`, on one line.
fn describe(info: &PanicHookInfo) -> String {
    let msg = panic_message(info.payload()).lines().map(str::trim).collect::<Vec<_>>().join("; ");
    match info.location() {
        Some(at) => format!("{msg} at {}:{}", at.file(), at.line()),
        None => msg,
    }
}

fn backtrace_wanted() -> bool {
    std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0")
}
