//! Process-wide allocator settings for training.

/// Keeps freed memory in the process instead of handing it back to the kernel.
///
/// A training step allocates and frees the same large buffers (activations, gradients,
/// optimizer temporaries) every step. glibc serves blocks above its mmap threshold with fresh
/// mappings and unmaps them on free, so every step faults each page in again. Measured on
/// SmolLM2-135M, full fine-tuning, 4 x 256 tokens, 4 steps with the first: 4.0 million minor
/// page faults and 13.1 s of system time by default; with mmap off and trimming off, freed
/// blocks are reused: 1.2 million faults and 4.2 s, the same peak memory (4.8 GB).
///
/// This changes malloc for the whole process; call it once at start in programs that train.
/// It does nothing outside Linux with glibc.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only adjusts glibc's allocator parameters; every value is documented
    // (man 3 mallopt): M_MMAP_MAX 0 disables mmap for allocations, M_TRIM_THRESHOLD -1
    // disables trimming the heap's top.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, -1);
    }
}
