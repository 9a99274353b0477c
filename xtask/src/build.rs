//! `cargo xtask build [--checked]`: `libhakmem.so`, the library for `LD_PRELOAD`
//! (`crates/hakmem_preload`).

use crate::util::{cargo, root, run, target_dir, Result};
use std::path::{Path, PathBuf};

/// Builds `libhakmem.so` (release profile, with `features` of `crates/hakmem_preload`) of the
/// workspace at `manifest` (ours if `None`) into `dir` (ours if `None`); returns its path.
fn build_cdylib(features: &[&str], manifest: Option<&Path>, dir: Option<&Path>) -> Result<PathBuf> {
    let workspace = manifest
        .and_then(Path::parent)
        .map_or_else(root, Path::to_path_buf);
    let mut features = features.to_vec();
    let mut cmd = cargo();
    cmd.args(["build", "--release", "-p"]);
    if workspace.join("crates/hakmem_preload").exists() {
        cmd.arg("hakmem_preload");
    } else {
        // A revision from before `crates/hakmem_preload` (a baseline): there the facade was
        // the cdylib, exporting the C symbols with its feature `c-override`.
        cmd.arg("hakmem");
        features.push("c-override");
    }
    if !features.is_empty() {
        cmd.arg("--features").arg(features.join(","));
    }
    if let Some(m) = manifest {
        cmd.arg("--manifest-path").arg(m);
    }
    if let Some(d) = dir {
        cmd.arg("--target-dir").arg(d);
    }
    run(&mut cmd)?;
    let so = dir
        .map_or_else(target_dir, Path::to_path_buf)
        .join("release/libhakmem.so");
    if !so.exists() {
        return Err(format!("{} was not produced", so.display()));
    }
    Ok(so)
}

/// Builds `target/release/libhakmem.so` (what `cargo build --release` builds) and returns
/// its path.
pub fn release_cdylib() -> Result<PathBuf> {
    build_cdylib(&[], None, None)
}

/// Builds `target/release/libhakmem_checked.so` (feature `checked`, in its own target
/// directory so it never overwrites the release build) and returns its path.
pub fn checked_cdylib() -> Result<PathBuf> {
    let dir = target_dir().join("checked");
    let built = build_cdylib(&["checked"], None, Some(&dir))?;
    let so = target_dir().join("release/libhakmem_checked.so");
    std::fs::create_dir_all(target_dir().join("release")).map_err(|e| e.to_string())?;
    std::fs::copy(&built, &so).map_err(|e| format!("cannot copy {}: {e}", built.display()))?;
    Ok(so)
}

/// A cdylib of an earlier revision, to compare with in the same benchmark run: `rev` is
/// either the path of a built `.so` or a git revision, checked out (detached) in a worktree
/// under `target/bench-base/` and built there with its own target directory. Returns the
/// path of the `.so`.
pub fn baseline_cdylib(rev: &str) -> Result<PathBuf> {
    let as_path = PathBuf::from(rev);
    if as_path.extension().is_some_and(|x| x == "so") {
        return as_path
            .exists()
            .then_some(as_path.clone())
            .ok_or(format!("{} does not exist", as_path.display()));
    }
    let out = std::process::Command::new("git")
        .args(["rev-parse", "--verify", "--short"])
        .arg(format!("{rev}^{{commit}}"))
        .current_dir(crate::util::root())
        .output()
        .map_err(|e| format!("cannot run git: {e}"))?;
    if !out.status.success() {
        return Err(format!("{rev} is neither a .so nor a git revision"));
    }
    let sha = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let base = target_dir().join("bench-base");
    let tree = base.join(&sha);
    if !tree.join("Cargo.toml").exists() {
        std::fs::create_dir_all(&base).map_err(|e| e.to_string())?;
        run(std::process::Command::new("git")
            .args(["worktree", "add", "--detach", "--force"])
            .arg(&tree)
            .arg(&sha)
            .current_dir(crate::util::root()))?;
    }
    // A target directory per revision: with one shared by every revision, cargo took a
    // later revision's `superslab` as up to date for `c553d15` (whose build then failed),
    // and an earlier `.so` of `c553d15` built there differed from a clean build.
    let manifest = tree.join("Cargo.toml");
    let built = build_cdylib(&[], Some(&manifest), Some(&tree.join("target")))?;
    let so = base.join(format!("libhakmem-{sha}.so"));
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
