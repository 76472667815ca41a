//! Fuzz target `parser`: arbitrary bytes fed to the protocol parser at arbitrary split
//! points (see [`fuzz::check_parser`] for the input layout and what is checked).
//!
//! Under cargo-fuzz (`--cfg fuzzing`) this is a libFuzzer target; in a plain build it
//! replays the files named on the command line, so crashes can be re-run on stable.
#![cfg_attr(fuzzing, no_main)]

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz::check_parser(data));

#[cfg(not(fuzzing))]
fn main() -> std::io::Result<()> {
    fuzz::replay(fuzz::check_parser)
}
