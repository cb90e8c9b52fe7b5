//! glibc's heap settings for a process that allocates and frees the same tensor-sized blocks
//! over and over. By default every block over ~128 KiB is a fresh mmap, so each op's output
//! page-faults on first touch and the kernel zeroes it; and the heap top is trimmed after each
//! large free. Served from the heap and kept, a freed block is reused without faults: ToMe's
//! merge step runs ~4× faster.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn keep_freed_blocks() {
    // SAFETY: mallopt only changes allocator parameters; called once before any thread starts.
    unsafe {
        // 32 MiB, glibc's upper bound for the threshold; larger blocks still come from mmap.
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn keep_freed_blocks() {}
