//! `cargo xtask test`: every test of the project.

use crate::util::{cargo, Result};

pub fn run(_args: &[String]) -> Result {
    crate::build::release_cdylib()?;
    crate::util::run(cargo().args(["test", "--workspace"]))
}

