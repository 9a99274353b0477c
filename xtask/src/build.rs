//! `cargo xtask build [--checked]`: the preloadable cdylib.

use crate::util::{cargo, run, target_dir, Result};
use std::path::PathBuf;

/// Builds `target/release/libhakmem.so` (the C symbols exported) and returns its path.
pub fn release_cdylib() -> Result<PathBuf> {
    run(cargo().args(["build", "--release", "-p", "hakmem", "--features", "c-override"]))?;
    let so = target_dir().join("release/libhakmem.so");
    if !so.exists() {
        return Err(format!("{} was not produced", so.display()));
    }
    Ok(so)
}

pub fn command(args: &[String]) -> Result {
    if args.iter().any(|a| a == "--checked") {
        return Err("--checked: the checked build is not implemented yet (issue 7)".into());
    }
    let so = release_cdylib()?;
    println!("built {}", so.display());
    Ok(())
}
