//! `cargo xtask bench`: hakmem against glibc, mimalloc and jemalloc.

use crate::util::Result;

pub fn run(_args: &[String]) -> Result {
    Err("the benchmark harness is not implemented yet (issue 5)".into())
}
