//! A panic that reaches the top of the binary is reported as a bug: one `error:` line with
//! the message and place, exit code 101, a backtrace only with RUST_BACKTRACE.
mod common;

fn run_with(fault: &str, backtrace: &str) -> (Option<i32>, String) {
    let out = common::bin()
        .arg("--version")
        .env("MERGEVQ_FAULT_PANIC", fault)
        .env("RUST_BACKTRACE", backtrace)
        .output()
        .expect("run mergevq");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).to_string())
}

#[test]
fn a_panic_is_one_error_line_naming_a_bug_and_exits_101() {
    for fault in ["main", "thread"] {
        let (code, err) = run_with(fault, "0");
        assert_eq!(code, Some(101), "{fault}: {err}");
        assert_eq!(err.lines().count(), 1, "{fault}: one line expected: {err}");
        assert!(err.starts_with("error: internal error (a bug in mergevq, please report it): "), "{err}");
        assert!(err.contains(&format!("MERGEVQ_FAULT_PANIC={fault}")) && err.contains("main.rs:"), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn rust_backtrace_adds_the_backtrace() {
    let (code, err) = run_with("main", "1");
    assert_eq!(code, Some(101), "{err}");
    assert!(err.lines().count() > 1 && err.contains("fault_panic"), "{err}");
}
