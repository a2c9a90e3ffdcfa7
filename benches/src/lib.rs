//! Flotilla's benchmarks: criterion benches (`benches/`) and harness binaries (`src/bin/`);
//! this library holds what the harnesses share.

pub mod backend;
pub mod process;
