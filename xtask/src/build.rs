//! `cargo xtask build [--checked]`: the preloadable cdylib.

use crate::util::{cargo, run, target_dir, Result};
use std::path::PathBuf;

/// Builds `target/release/libhakmem.so` (the C symbols exported) and returns its path.
pub fn release_cdylib() -> Result<PathBuf> {
    run(cargo().args([
        "build",
        "--release",
        "-p",
        "hakmem",
        "--features",
        "c-override",
    ]))?;
    let so = target_dir().join("release/libhakmem.so");
    if !so.exists() {
        return Err(format!("{} was not produced", so.display()));
    }
    Ok(so)
}

/// Builds `target/release/libhakmem_checked.so` (feature `checked`, in its own target
/// directory so it never overwrites the release build) and returns its path.
pub fn checked_cdylib() -> Result<PathBuf> {
    let dir = target_dir().join("checked");
    run(cargo()
        .args([
            "build",
            "--release",
            "-p",
            "hakmem",
            "--features",
            "c-override,checked",
            "--target-dir",
        ])
        .arg(&dir))?;
    let built = dir.join("release/libhakmem.so");
    let so = target_dir().join("release/libhakmem_checked.so");
    std::fs::create_dir_all(target_dir().join("release")).map_err(|e| e.to_string())?;
    std::fs::copy(&built, &so).map_err(|e| format!("cannot copy {}: {e}", built.display()))?;
    Ok(so)
}

pub fn command(args: &[String]) -> Result {
    let so = if args.iter().any(|a| a == "--checked") {
        checked_cdylib()?
    } else {
        release_cdylib()?
    };
    println!("built {}", so.display());
    Ok(())
}
