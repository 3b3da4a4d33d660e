//! Profiling devices: each dispatch submitted and timed on its own (native only).

use super::*;

/// Where the time of a profiled device went, per kernel entry point (see
/// [`Gpu::with_profiling`]).
#[derive(Clone, Debug, PartialEq)]
pub struct KernelTime {
    /// WGSL entry point.
    pub entry: &'static str,
    /// Dispatches recorded.
    pub calls: u64,
    /// Wall time from recording to completion, summed over the calls (operand copies
    /// included).
    pub seconds: f64,
}

impl Gpu {
    /// A profiling device: every dispatch is submitted and waited for on its own, and its
    /// time is added to its kernel's total ([`Gpu::kernel_times`]). That serialises all work,
    /// so use it to see where a step's time goes, not to measure throughput. Call before any
    /// op. Native only: the browser must never wait for the GPU.
    #[cfg(not(target_arch = "wasm32"))]
    /// Fails on a `Gpu` already cloned.
    pub fn with_profiling(mut self) -> Result<Self> {
        Self::unshared(&mut self, "with_profiling")?.profile = Some(Mutex::default());
        Ok(self)
    }

    /// Whether this device profiles its kernels (see [`Gpu::with_profiling`]).
    pub fn is_profiling(&self) -> bool {
        self.0.profile.is_some()
    }

    /// Time per kernel since the last [`Gpu::reset_kernel_times`], the slowest first; empty
    /// unless profiling.
    pub fn kernel_times(&self) -> Vec<KernelTime> {
        let Some(p) = &self.0.profile else {
            return Vec::new();
        };
        let mut v: Vec<KernelTime> = lock(p)
            .iter()
            .map(|(&entry, &(calls, seconds))| KernelTime {
                entry,
                calls,
                seconds,
            })
            .collect();
        v.sort_by(|a, b| b.seconds.total_cmp(&a.seconds).then(a.entry.cmp(b.entry)));
        v
    }

    /// Clears the totals of [`Gpu::kernel_times`].
    pub fn reset_kernel_times(&self) {
        if let Some(p) = &self.0.profile {
            lock(p).clear();
        }
    }

    /// Runs `record` (which records one dispatch of `entry`); on a profiling device, waits
    /// for the work before it first and for the dispatch after, and books the time.
    pub(super) fn profiled<R>(&self, entry: &'static str, record: impl FnOnce() -> R) -> R {
        #[cfg(not(target_arch = "wasm32"))]
        if let Some(p) = &self.0.profile {
            // Errors surface at the caller's next flush; the profile only loses accuracy.
            let _ = self.sync();
            let start = std::time::Instant::now();
            let r = record();
            let _ = self.sync();
            let mut totals = lock(p);
            let e = totals.entry(entry).or_insert((0, 0.0));
            e.0 += 1;
            e.1 += start.elapsed().as_secs_f64();
            return r;
        }
        let _ = entry;
        record()
    }
}
