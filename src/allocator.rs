//! How the process asks for memory.

/// Has glibc's allocator serve every thread from one arena; call it before any thread starts.
///
/// glibc gives each thread that allocates while another does its own arena, and memory freed
/// in one arena is not reused by the others. autoredeploy waits on the network, not on its
/// allocator: with one arena, a push with a thousand upgrades in flight peaks about 3 MiB
/// lower (see BENCHMARKS.md), at no measurable cost in time. Other C libraries are left as
/// they are.
pub fn use_one_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only sets one of the allocator's tunables, and it is called before
    // the process starts any thread.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}
