//! Small helpers shared by the xtask commands.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub type Result<T = ()> = std::result::Result<T, String>;

/// The workspace root (the parent of `xtask/`).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Runs a command, inheriting stdio; an error if it cannot start or exits non-zero.
pub fn run(cmd: &mut Command) -> Result {
    let shown = format!("{cmd:?}");
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{shown} failed: {status}"))
    }
}

/// Runs a command to its end and returns its stdout; an error (with its stderr) if it cannot
/// start or exits non-zero.
pub fn stdout_of(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// [`run`] with a deadline: past `limit` the command and every process it started are
/// killed and named in the error, so that a hanging test fails the run instead of
/// stalling it until CI's own timeout. The command stays in our process group (Ctrl-C
/// reaches it).
pub fn run_within(cmd: &mut Command, limit: Duration) -> Result {
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    let start = Instant::now();
    loop {
        match child.try_wait().map_err(|e| e.to_string())? {
            Some(status) if status.success() => return Ok(()),
            Some(status) => return Err(format!("{shown} failed: {status}")),
            None if start.elapsed() > limit => break,
            None => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    let hung = descendants(child.id());
    let names: Vec<String> = hung
        .iter()
        .map(|&pid| {
            let cmdline =
                std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            cmdline.split('\0').next().unwrap_or("?").to_string()
        })
        .collect();
    for &pid in hung.iter().rev() {
        // SAFETY: kill(2) on a process we started (directly or through it).
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
    let _ = child.kill();
    let _ = child.wait();
    Err(format!(
        "{shown} timed out after {} s; still running: {}",
        limit.as_secs(),
        names.join(", ")
    ))
}

/// The processes below `pid` (children before grandchildren), from `/proc/*/stat`.
fn descendants(pid: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(p) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // The field after the `(comm)` and the state letter is the parent's pid.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|f| f.parse::<u32>().ok());
        if let Some(ppid) = ppid {
            parent_of.push((p, ppid));
        }
    }
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let p = found[i];
        found.extend(
            parent_of
                .iter()
                .filter(|&&(_, pp)| pp == p)
                .map(|&(c, _)| c),
        );
        i += 1;
    }
    found.remove(0);
    found
}

/// `cargo` as the one that runs xtask.
pub fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

/// The cargo target directory (`$CARGO_TARGET_DIR` or `<root>/target`).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => {
            let d = PathBuf::from(d);
            if d.is_absolute() {
                d
            } else {
                root().join(d)
            }
        }
        None => root().join("target"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_within_kills_a_hung_command_and_names_what_hung() {
        let start = Instant::now();
        let err = run_within(
            Command::new("sh").args(["-c", "sleep 300 & wait"]),
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(30), "{err}");
        assert!(err.contains("timed out") && err.contains("sleep"), "{err}");
        assert!(run_within(&mut Command::new("true"), Duration::from_secs(60)).is_ok());
        assert!(run_within(&mut Command::new("false"), Duration::from_secs(60)).is_err());
    }
}
