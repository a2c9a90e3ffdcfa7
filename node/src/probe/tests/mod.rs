//! Tests of single attempts (fake runtime, loopback servers) and of the workers' timing
//! (paused clock).

mod fake;
mod once;
mod prober;
