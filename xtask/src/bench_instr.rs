//! `cargo xtask bench --instructions`: instructions per malloc and per free through each
//! preloaded allocator, counted by callgrind (stable on a noisy machine, unlike times).
//!
//! The driver `benches/tools/instr.c` does N malloc(32) (batches of 64 then freed, or
//! alternating malloc+free) for two N; the difference of the two counts, divided by the
//! difference of N, is the cost of one call with start-up cancelled out.

use crate::bench::{report_dir, Allocator};
use crate::util::Result;
use std::collections::HashMap;
use std::fmt::Write;
use std::path::Path;
use std::process::{Command, Stdio};

const N: [u64; 2] = [1 << 16, 1 << 17];
const PATTERNS: [&str; 2] = ["batch", "alternating"];

/// Callgrind's counts for one run: the program total, and the inclusive counts of malloc and
/// free (under any of their names).
struct Counts {
    total: u64,
    malloc: u64,
    free: u64,
}

fn callgrind(
    driver: &Path,
    preload: Option<&Path>,
    pattern: &str,
    n: u64,
    out: &Path,
) -> Result<Counts> {
    let mut cmd = Command::new("valgrind");
    cmd.arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(driver)
        .args([pattern, &n.to_string()])
        .env_remove("LD_PRELOAD")
        .stdin(Stdio::null());
    if let Some(p) = preload {
        cmd.env("LD_PRELOAD", p);
    }
    let run = cmd
        .output()
        .map_err(|e| format!("cannot run valgrind: {e}"))?;
    if !run.status.success() {
        let err = String::from_utf8_lossy(&run.stderr);
        return Err(format!(
            "valgrind failed ({}): {}",
            run.status,
            err.lines().last().unwrap_or("")
        ));
    }
    let text = std::fs::read_to_string(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let (total, funcs) = parse_callgrind(&text);
    Ok(Counts {
        total,
        malloc: inclusive(&funcs, &["malloc", "__libc_malloc"]),
        free: inclusive(&funcs, &["free", "__libc_free", "cfree"]),
    })
}

/// One function's own instructions and the inclusive costs of the calls it makes.
#[derive(Default)]
struct Func {
    own: u64,
    calls: Vec<(String, u64)>,
}

/// Reads a callgrind out file: its total and, per function name, own cost and calls. A
/// function whose code comes from several source files appears once per file, and a jump from
/// one part to another is recorded as a call: parts are merged by name here.
fn parse_callgrind(text: &str) -> (u64, HashMap<String, Func>) {
    let mut names = HashMap::<String, String>::new(); // "(id)" -> name, for fn= and cfn=
    let mut resolve = |v: &str| match v.split_once(") ") {
        Some((id, name)) => {
            names.insert(format!("{id})"), name.to_string());
            name.to_string()
        }
        None => names.get(v).cloned().unwrap_or_else(|| v.to_string()),
    };
    let (mut total, mut funcs) = (0, HashMap::<String, Func>::new());
    let (mut current, mut callee, mut in_call) = (String::new(), String::new(), false);
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("fn=") {
            current = resolve(v);
        } else if let Some(v) = line.strip_prefix("cfn=") {
            callee = resolve(v);
        } else if line.starts_with("calls=") {
            in_call = true;
        } else if let Some(v) = line
            .strip_prefix("totals:")
            .or_else(|| line.strip_prefix("summary:"))
        {
            total = v.trim().parse().unwrap_or(total);
        } else if line.starts_with(|c: char| c.is_ascii_digit() || "+-*".contains(c)) {
            let cost: u64 = line
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            let f = funcs.entry(current.clone()).or_default();
            if in_call {
                f.calls.push((callee.clone(), cost));
                in_call = false;
            } else {
                f.own += cost;
            }
        }
    }
    (total, funcs)
}

/// The inclusive cost of a function known under any of `aliases`: its own cost plus its calls
/// to other functions.
fn inclusive(funcs: &HashMap<String, Func>, aliases: &[&str]) -> u64 {
    aliases
        .iter()
        .filter_map(|a| funcs.get(*a))
        .map(|f| {
            f.own
                + f.calls
                    .iter()
                    .filter(|(c, _)| !aliases.contains(&c.as_str()))
                    .map(|(_, n)| n)
                    .sum::<u64>()
        })
        .sum()
}

pub fn run(allocs: &[Allocator], bin_dir: &Path, source: &Path) -> Result {
    let have = |tool: &str| {
        Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !have("valgrind") {
        eprintln!(
            "bench --instructions: valgrind is not installed (apt-get install valgrind): skipped"
        );
        return Ok(());
    }
    let driver = bin_dir.join("instr");
    crate::bench::compile_c(source, &driver)?;
    let mut table = format!(
        "# Instructions per call (callgrind)\n\n{}\nmalloc(32), {} minus {} calls; the pair column is the whole program's difference \
         per malloc+free (with the driver's loop and the PLT calls).\n\n\
         | allocator | pattern | per malloc | per free | per pair (whole program) |\n|---|---|---:|---:|---:|\n",
        crate::bench_report::machine(),
        N[1],
        N[0]
    );
    for alloc in allocs {
        for pattern in PATTERNS {
            let cells = match &alloc.absent {
                Some(why) => format!("ABSENT: {why} | | "),
                None => {
                    eprintln!("bench --instructions: {} {pattern}", alloc.name);
                    let mut counts = Vec::new();
                    for n in N {
                        let out = report_dir()
                            .join(format!("logs/callgrind-{}-{pattern}-{n}.out", alloc.name));
                        counts.push(callgrind(
                            &driver,
                            alloc.preload.as_deref(),
                            pattern,
                            n,
                            &out,
                        ));
                    }
                    match (&counts[0], &counts[1]) {
                        (Ok(a), Ok(b)) => {
                            let per = |x: u64, y: u64| (y as f64 - x as f64) / (N[1] - N[0]) as f64;
                            format!(
                                "{:.1} | {:.1} | {:.1}",
                                per(a.malloc, b.malloc),
                                per(a.free, b.free),
                                per(a.total, b.total)
                            )
                        }
                        (Err(e), _) | (_, Err(e)) => format!("FAIL: {e} | | "),
                    }
                }
            };
            let _ = writeln!(table, "| {} | {pattern} | {cells} |", alloc.name);
        }
    }
    println!("{table}");
    let path = report_dir().join("instructions.md");
    std::fs::write(&path, &table).map_err(|e| e.to_string())?;
    eprintln!("bench --instructions: wrote {}", path.display());
    Ok(())
}
