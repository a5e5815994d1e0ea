//! Replays the committed corpus of every fuzz target (`fuzz/corpus/TARGET/`) through the
//! function the target calls (`flexhook::fuzzing`), on stable Rust: no input may panic, and
//! none may hold more memory at once than `fuzzing::allocation_bound` of its size. A crash that `cargo fuzz` finds goes into
//! the corpus with its fix, and from then on this test keeps it fixed.

use std::alloc::System;
use std::collections::BTreeSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use flexhook::fuzzing::{allocation_bound, TARGETS};
use peakmem_alloc::{PeakMemAlloc, PeakMemAllocTrait, INSTRUMENTED_SYSTEM};

/// Counts the bytes this test binary holds, to measure one input's peak.
#[global_allocator]
static ALLOCATOR: &PeakMemAlloc<System> = &INSTRUMENTED_SYSTEM;

/// The allocator counts every thread: the tests here take turns.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = fuzz_dir().join("corpus").join(target);
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| {
        panic!(
            "fuzz target `{target}` has no corpus at {}: {e}",
            dir.display()
        )
    });
    let mut files: Vec<(PathBuf, Vec<u8>)> = entries
        .map(|entry| entry.expect("a readable corpus directory").path())
        .filter(|path| path.is_file())
        .map(|path| {
            let bytes = std::fs::read(&path).expect("a readable corpus file");
            (path, bytes)
        })
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "fuzz target `{target}`: {} is empty",
        dir.display()
    );
    files
}

#[test]
fn every_fuzz_target_has_its_function_and_a_corpus() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let files: BTreeSet<String> = std::fs::read_dir(fuzz_dir().join("fuzz_targets"))
        .expect("fuzz/fuzz_targets/")
        .map(|entry| entry.expect("a readable entry").path())
        .filter_map(|path| Some(path.file_stem()?.to_str()?.to_owned()))
        .collect();
    let functions: BTreeSet<String> = TARGETS.iter().map(|(name, _)| name.to_string()).collect();
    assert_eq!(
        files, functions,
        "each fuzz/fuzz_targets/NAME.rs calls flexhook::fuzzing::NAME, listed in fuzzing::TARGETS"
    );
    for (name, _) in TARGETS {
        corpus(name);
    }
}

#[test]
fn every_corpus_input_runs_without_a_panic_and_within_its_allocation_bound() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut failures = Vec::new();
    let mut inputs = 0;
    for (target, run) in TARGETS {
        for (path, data) in corpus(target) {
            inputs += 1;
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            // The first run also fills what is built once per process (the verifiers, the
            // log sink, time zones), which is no input's own cost; the second is measured.
            if catch_unwind(AssertUnwindSafe(|| run(&data))).is_err() {
                failures.push(format!("{target}/{name}: panicked (see above)"));
                continue;
            }
            ALLOCATOR.reset_peak_memory();
            run(&data);
            let peak = ALLOCATOR.get_peak_memory();
            let bound = allocation_bound(data.len());
            if peak > bound {
                failures.push(format!(
                    "{target}/{name}: {} bytes held up to {peak} bytes at once, over the bound of {bound}",
                    data.len()
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {inputs} corpus inputs failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
