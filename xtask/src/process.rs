//! Process-level tests (`tests/process/`): fork under load, thread churn, memory given back
//! to the OS (also when other threads freed it for sleeping owners), allocation before `main` and during thread exit, a soak, a late `dlopen`, and
//! an address-space limit below the address map's reservation.
//! Each program checks itself and exits 0; each runs under `LD_PRELOAD` (except
//! `dlopen_late`, which loads the library itself) with a time limit.

use crate::util::root;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TESTS: &[(&str, bool)] = &[
    ("fork_under_load", true),
    ("thread_churn", true),
    ("purge_rss", true),
    ("idle_return", true),
    ("remote_return", true),
    ("early_init", true),
    ("soak", true),
    ("dlopen_late", false),
    ("address_limit", true),
];
const LIMIT: Duration = Duration::from_secs(180);

/// Compiles and runs every process test; one `(name, result)` each.
pub fn run(out_dir: &Path, so: &Path) -> Vec<(String, Result<(), String>)> {
    let _ = std::fs::create_dir_all(out_dir);
    TESTS
        .iter()
        .map(|&(name, preload)| {
            let src = root().join("tests/process").join(format!("{name}.c"));
            let exe = out_dir.join(name);
            (
                format!("process/{name}"),
                compile(&src, &exe).and_then(|()| execute(&exe, so, preload)),
            )
        })
        .collect()
}

fn compile(src: &Path, exe: &Path) -> Result<(), String> {
    let out = Command::new("cc")
        .args(["-O2", "-pthread", "-o"])
        .arg(exe)
        .arg(src)
        .arg("-ldl")
        .output();
    match out {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!(
            "does not compile: {}",
            String::from_utf8_lossy(&o.stderr)
        )),
        Err(e) => Err(format!("cannot run cc: {e}")),
    }
}

fn execute(exe: &Path, so: &Path, preload: bool) -> Result<(), String> {
    let mut cmd = Command::new(exe);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    if preload {
        cmd.env("LD_PRELOAD", so);
    } else {
        cmd.arg(so);
    }
    let mut child = cmd.spawn().map_err(|e| format!("cannot start: {e}"))?;
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if start.elapsed() > LIMIT => {
                let _ = child.kill();
                return Err(format!("timed out after {}s (deadlock?)", LIMIT.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(e.to_string()),
        }
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text
        .lines()
        .rfind(|l| !l.starts_with("spawned"))
        .unwrap_or("")
        .to_string();
    if out.status.success() {
        println!("   {last} ({:.1}s)", start.elapsed().as_secs_f64());
        Ok(())
    } else {
        Err(format!(
            "{} — {} {}",
            out.status,
            last,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
