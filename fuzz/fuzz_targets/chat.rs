//! Fuzz target `chat`: arbitrary bytes as chat requests and message headers (see
//! [`fuzz::check_chat`]).
//!
//! Under cargo-fuzz (`--cfg fuzzing`) this is a libFuzzer target; in a plain build it
//! replays the files named on the command line, so crashes can be re-run on stable.
#![cfg_attr(fuzzing, no_main)]

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz::check_chat(data));

#[cfg(not(fuzzing))]
fn main() -> std::io::Result<()> {
    fuzz::replay(fuzz::check_chat)
}
