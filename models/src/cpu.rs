//! CPU thread setup for candle.
//!
//! candle's CPU backend asks for the thread count on every matrix multiplication. When
//! `RAYON_NUM_THREADS` is unset it reads `/proc/cpuinfo` each time to count physical
//! cores: on the 2-core build machine that doubled the time of a 64-session
//! verification pass (57 → 25 ms). Setting the variable once at start-up makes the
//! lookup an environment read.

/// Sets `RAYON_NUM_THREADS` to the number of cores this process may use, unless the
/// user set it. Returns the thread count candle will use.
///
/// # Safety
///
/// Writes the process environment: call it first thing in `main`, before any other
/// thread exists (as `std::env::set_var` requires).
#[allow(unsafe_code)]
pub unsafe fn init_threads() -> usize {
    if let Some(n) = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
    {
        return n;
    }
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    // SAFETY: the caller guarantees no other thread is running, so nothing reads the
    // environment concurrently.
    unsafe { std::env::set_var("RAYON_NUM_THREADS", n.to_string()) };
    n
}
