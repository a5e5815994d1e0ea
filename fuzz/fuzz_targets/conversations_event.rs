#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| flexhook_fuzz::run(
    flexhook::fuzzing::conversations_event,
    data
));
