//! What every fuzz target runs around its `flexhook::fuzzing` function: the input's peak
//! allocation, held to `flexhook::fuzzing::allocation_bound` as `tests/fuzz_corpus.rs`
//! holds the committed corpus to it on stable.

use std::alloc::System;
use std::sync::Once;

use peakmem_alloc::{PeakMemAlloc, PeakMemAllocTrait, INSTRUMENTED_SYSTEM};

#[global_allocator]
static ALLOCATOR: &PeakMemAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Runs `target` on `data`, and fails the input (a crash, for libFuzzer) if it held more
/// than its bound at once.
pub fn run(target: flexhook::fuzzing::Target, data: &[u8]) {
    // What the first input builds once per process (verifiers, the log sink, time zones)
    // is no input's own cost.
    static WARM_UP: Once = Once::new();
    WARM_UP.call_once(|| target(data));
    ALLOCATOR.reset_peak_memory();
    target(data);
    let peak = ALLOCATOR.get_peak_memory();
    let bound = flexhook::fuzzing::allocation_bound(data.len());
    assert!(
        peak <= bound,
        "{} input bytes held up to {peak} bytes at once, over the bound of {bound}",
        data.len()
    );
}
