//! glibc's heap settings for a process that allocates and frees the same tensor-sized blocks
//! over and over. By default every block over ~128 KiB is a fresh mmap, so each op's output
//! page-faults on first touch and the kernel zeroes it; and the heap top is trimmed after each
//! large free. Served from the heap and kept, a freed block is reused without faults: ToMe's
//! merge step runs ~4× faster, and a G+R d64 training step at batch 2 (feature maps of 32 MiB
//! and more, which glibc would always map) 1.4–1.7× faster. The process keeps its peak heap
//! until it exits.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn keep_freed_blocks() {
    // SAFETY: mallopt only changes allocator parameters; called once before any thread starts.
    unsafe {
        // No block from mmap, whatever its size (the threshold alone stops at 32 MiB), and no
        // trimming: a training step frees gigabytes at its end and takes them again at once.
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, -1);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn keep_freed_blocks() {}
