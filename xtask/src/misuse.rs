//! The misuse tests: one C program per misuse in `tests/misuse/`.
//!
//! Each program's first line says `// expect: <text>`: under `libhakmem_checked.so` it must
//! be killed by SIGABRT with `<text>` on stderr. A program with a `// release: <text>` line
//! is run under the release build twice: as it is, it must print `<text>` and be killed by
//! SIGABRT; with `HAKMEM_ON_MISUSE=warn`, it must print `<text>` and keep running (the
//! pointer is left alone): it then reaches its end and exits 3.

use crate::util::root;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;

/// Compiles and runs every misuse program; one `(name, result)` per check.
pub fn run(
    out_dir: &Path,
    release_so: &Path,
    checked_so: &Path,
) -> Vec<(String, Result<(), String>)> {
    let dir = root().join("tests/misuse");
    let mut files: Vec<_> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "c"))
            .collect(),
        Err(e) => {
            return vec![(
                "misuse".into(),
                Err(format!("cannot read {}: {e}", dir.display())),
            )]
        }
    };
    files.sort();
    let _ = std::fs::create_dir_all(out_dir);
    let mut results = Vec::new();
    for src in files {
        let name = src.file_stem().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&src).unwrap_or_default();
        let field = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key))
                .map(|s| s.trim().to_string())
        };
        let exe = out_dir.join(&name);
        let compiled = Command::new("cc")
            .args(["-O1", "-w", "-pthread", "-o"])
            .arg(&exe)
            .arg(&src)
            .status();
        if !compiled.is_ok_and(|s| s.success()) {
            results.push((format!("misuse/{name}"), Err("does not compile".into())));
            continue;
        }
        let Some(expect) = field("// expect:") else {
            results.push((format!("misuse/{name}"), Err("no `// expect:` line".into())));
            continue;
        };
        results.push((
            format!("misuse/{name} (checked)"),
            check(&exe, checked_so, &expect, true),
        ));
        if let Some(release) = field("// release:") {
            results.push((
                format!("misuse/{name} (release)"),
                check(&exe, release_so, &release, true),
            ));
            results.push((
                format!("misuse/{name} (release, warn)"),
                check(&exe, release_so, &release, false),
            ));
        }
    }
    results
}

/// Runs `exe` under `so`: it must print `expect` and abort, or (`must_abort` false, run
/// with `HAKMEM_ON_MISUSE=warn`) print it and exit 3.
fn check(exe: &Path, so: &Path, expect: &str, must_abort: bool) -> Result<(), String> {
    let mut cmd = Command::new(exe);
    cmd.env("LD_PRELOAD", so).env_remove("HAKMEM_ON_MISUSE");
    if !must_abort {
        cmd.env("HAKMEM_ON_MISUSE", "warn");
    }
    let out = cmd.output().map_err(|e| format!("cannot run: {e}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let first = stderr.lines().next().unwrap_or("").to_string();
    if !stderr.contains(expect) {
        return Err(format!(
            "stderr lacks {expect:?}; got {first:?} ({})",
            out.status
        ));
    }
    match (must_abort, out.status.signal(), out.status.code()) {
        (true, Some(6), _) => Ok(()), // SIGABRT
        (false, None, Some(3)) => Ok(()),
        _ => Err(format!(
            "unexpected end: {} (stderr: {first:?})",
            out.status
        )),
    }
}
