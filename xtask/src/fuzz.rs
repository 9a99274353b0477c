//! `cargo xtask fuzz <target|all> [--time SECS] [--cases N] [--seed S]`: long runs of the
//! model tests.
//!
//! Each target is a set of proptest model tests (their names contain `model`): random
//! operation sequences checked against a model. This builds them once in the `fuzz` profile
//! (release optimisation with debug assertions and overflow checks on, unwinding so
//! proptest can shrink), then runs the test binary again and again, each time with a fresh
//! `PROPTEST_RNG_SEED` and `PROPTEST_CASES` cases per test, until the time is up.
//!
//! A failing batch stops the run: its seed, proptest's minimised failing case and the panic
//! are printed, the whole output is kept in `target/fuzz/`, and proptest has written the
//! case to the crate's `proptest-regressions` file, which every later `cargo test` replays
//! first. `--seed S` replays one batch with that seed (with `--cases` as printed).
//!
//! Why proptest and not `cargo fuzz` (libFuzzer): see `docs/testing.md`.

use crate::test::output_limited;
use crate::util::{cargo, root, target_dir, Result};
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

const USAGE: &str = "usage: cargo xtask fuzz \
                     <tls_sll|refill|superslab|large|front_api|hakmem|hakmem-checked|hakmem-misuse|all> \
                     [--time SECS] [--cases N] [--seed S]";

/// A fuzz target: its package and which test binary of it holds the model tests.
struct Target {
    name: &'static str,
    package: &'static str,
    /// `--lib` or `--test <name>` (and features).
    select: &'static [&'static str],
}

const TARGETS: [Target; 8] = [
    Target {
        name: "tls_sll",
        package: "tls_sll",
        select: &["--lib"],
    },
    Target {
        name: "refill",
        package: "refill",
        select: &["--test", "model"],
    },
    Target {
        name: "superslab",
        package: "superslab",
        select: &["--test", "model"],
    },
    Target {
        name: "large",
        package: "large",
        select: &["--test", "model"],
    },
    Target {
        name: "front_api",
        package: "front_api",
        select: &["--lib"],
    },
    Target {
        name: "hakmem",
        package: "hakmem",
        select: &["--test", "model"],
    },
    Target {
        name: "hakmem-checked",
        package: "hakmem",
        select: &["--test", "model", "--features", "checked"],
    },
    Target {
        name: "hakmem-misuse",
        package: "hakmem",
        select: &["--test", "misuse_model"],
    },
];

/// The libtest filter that selects the model tests of a binary.
const FILTER: &str = "model";
/// Time one batch may take beyond the run's end (a failing case is shrunk within it).
const BATCH_GRACE: Duration = Duration::from_secs(600);
/// Shrinking a failure stops after this long (ms) unless `PROPTEST_MAX_SHRINK_TIME` is set.
const SHRINK_MS: &str = "300000";

struct Opts {
    targets: Vec<&'static Target>,
    time: Duration,
    cases: Option<u32>,
    seed: Option<u64>,
}

fn parse(args: &[String]) -> Result<Opts> {
    let mut it = args.iter();
    let which = it.next().ok_or(USAGE)?;
    let targets: Vec<&Target> = match which.as_str() {
        "all" => TARGETS.iter().collect(),
        name => vec![TARGETS
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| format!("unknown target {name}\n{USAGE}"))?],
    };
    let mut o = Opts {
        targets,
        time: Duration::from_secs(60),
        cases: None,
        seed: None,
    };
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{a} needs a value\n{USAGE}"))
        };
        let bad = |v: &str| format!("{a}: not a number: {v}");
        match a.as_str() {
            "--time" => {
                let v = value()?;
                o.time = Duration::from_secs(v.parse().map_err(|_| bad(v))?);
            }
            "--cases" => {
                let v = value()?;
                o.cases = Some(v.parse().ok().filter(|&n| n > 0).ok_or_else(|| bad(v))?);
            }
            "--seed" => {
                let v = value()?;
                let n = match v.strip_prefix("0x") {
                    Some(hex) => u64::from_str_radix(hex, 16).ok(),
                    None => v.parse().ok(),
                };
                o.seed = Some(n.ok_or_else(|| bad(v))?);
            }
            _ => return Err(format!("unknown argument {a}\n{USAGE}")),
        }
    }
    Ok(o)
}

pub fn run(args: &[String]) -> Result {
    let o = parse(args)?;
    let mut totals = vec![];
    for t in &o.targets {
        let exe = build(t)?;
        let (cases, batches, took) = fuzz(t, &exe, &o)?;
        totals.push((t.name, cases, batches, took));
    }
    println!("\nfuzz summary (no failure):");
    for (name, cases, batches, took) in totals {
        println!(
            "  {name:<10} {cases:>10} cases in {batches:>4} batches, {:.0}s",
            took.as_secs_f64()
        );
    }
    Ok(())
}

/// Builds the target's test binary in the `fuzz` profile and returns its path.
fn build(t: &Target) -> Result<PathBuf> {
    println!("fuzz {}: building (profile fuzz)", t.name);
    let out = cargo()
        .args(["test", "--profile", "fuzz", "-p", t.package])
        .args(t.select)
        .args(["--no-run", "--message-format=json-render-diagnostics"])
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !out.status.success() {
        return Err(format!("building {}'s tests failed", t.name));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let exes: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("\"reason\":\"compiler-artifact\"") && l.contains("\"test\":true"))
        .filter_map(|l| {
            let rest = &l[l.find("\"executable\":\"")? + "\"executable\":\"".len()..];
            Some(&rest[..rest.find('"')?])
        })
        .collect();
    match exes.as_slice() {
        [one] => Ok(PathBuf::from(one)),
        _ => Err(format!(
            "expected one test binary for {}, cargo built {exes:?}",
            t.name
        )),
    }
}

/// A fresh random seed (std's per-process random hasher keys, mixed with the clock).
fn fresh_seed() -> u64 {
    let mut h = RandomState::new().build_hasher();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    h.write_u128(now.as_nanos());
    h.finish()
}

/// Runs batches until the time is up (or once, for `--seed`); returns (cases, batches, time).
fn fuzz(t: &Target, exe: &Path, o: &Opts) -> Result<(u64, u32, Duration)> {
    let start = Instant::now();
    let end = start + o.time;
    let crate_dir = root().join("crates").join(t.package);
    let regressions_before = regression_files(&crate_dir);
    // Without --cases, the batch size adapts so that one batch takes 5 to 20 seconds.
    let mut per_test = o.cases.unwrap_or(64);
    let (mut total, mut batches) = (0u64, 0u32);
    loop {
        let seed = o.seed.unwrap_or_else(fresh_seed);
        let mut cmd = Command::new(exe);
        cmd.args([FILTER, "--quiet"])
            .current_dir(&crate_dir)
            .env("PROPTEST_CASES", per_test.to_string())
            .env("PROPTEST_RNG_SEED", seed.to_string())
            .env("RUST_BACKTRACE", "0");
        if std::env::var_os("PROPTEST_MAX_SHRINK_TIME").is_none() {
            cmd.env("PROPTEST_MAX_SHRINK_TIME", SHRINK_MS);
        }
        let limit = end.saturating_duration_since(Instant::now()) + BATCH_GRACE;
        let batch_start = Instant::now();
        let out = output_limited(&mut cmd, limit)
            .map_err(|e| format!("{} seed {seed}: {e} (a hang?)", t.name))?;
        let took = batch_start.elapsed();
        batches += 1;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let tests = passed_tests(&stdout);
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            return Err(failure(
                t,
                seed,
                per_test,
                &stdout,
                &stderr,
                &crate_dir,
                &regressions_before,
            ));
        }
        if tests == 0 {
            return Err(format!(
                "{}: no test matching `{FILTER}` ran in {}",
                t.name,
                exe.display()
            ));
        }
        let cases = tests as u64 * u64::from(per_test);
        total += cases;
        println!(
            "[{:>5.0}s/{}s] {}: seed {seed:#018x}: {tests} tests x {per_test} cases ok ({:.1}s); {total} cases so far",
            start.elapsed().as_secs_f64(),
            o.time.as_secs(),
            t.name,
            took.as_secs_f64()
        );
        if o.seed.is_some() || Instant::now() >= end {
            break;
        }
        if o.cases.is_none() {
            let per_case = took.as_secs_f64() / f64::from(per_test);
            if took < Duration::from_secs(5) && per_test < 1 << 20 {
                per_test *= 2;
            } else if took > Duration::from_secs(20) && per_test > 1 {
                per_test /= 2;
            }
            // Nor past the end by much: as many cases as fit in the time left.
            let left = end.saturating_duration_since(Instant::now()).as_secs_f64();
            let fit = (left / per_case.max(1e-9)).max(1.0);
            per_test = per_test.min(fit as u32).max(1);
        }
    }
    println!(
        "fuzz {}: {total} cases in {batches} batches, {:.0}s, no failure",
        t.name,
        start.elapsed().as_secs_f64()
    );
    Ok((total, batches, start.elapsed()))
}

/// Tests that passed in a libtest run (its `test result: ok. N passed` line).
fn passed_tests(stdout: &str) -> u32 {
    stdout
        .lines()
        .filter_map(|l| {
            l.strip_prefix("test result: ")?
                .split_once(". ")?
                .1
                .split_once(" passed")
        })
        .filter_map(|(n, _)| n.trim().parse::<u32>().ok())
        .sum()
}

/// Reports a failed batch: keeps its output, prints the seed, the minimised case and the
/// panic, and where proptest saved the case.
fn failure(
    t: &Target,
    seed: u64,
    cases: u32,
    stdout: &str,
    stderr: &str,
    crate_dir: &Path,
    before: &[(PathBuf, Option<SystemTime>)],
) -> String {
    let dir = target_dir().join("fuzz");
    let log = dir.join(format!("{}-{seed:016x}.log", t.name));
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(&log, format!("{stdout}\n--- stderr ---\n{stderr}"));
    println!(
        "\nFAILED {}: seed {seed} ({seed:#018x}), {cases} cases per test",
        t.name
    );
    // Each failed test's header, panic and proptest's minimised case (pretty-printed over
    // many lines, up to its `successes:` line).
    let all = format!("{stdout}\n{stderr}");
    let mut shown = 0;
    let mut in_case = false;
    for l in all.lines() {
        if l.starts_with("---- ") || l.contains("panicked at") {
            in_case = false;
            println!("  {l}");
        } else if l.contains("Test failed") || l.contains("minimal failing input") {
            in_case = true;
        }
        if in_case {
            if l.trim_start().starts_with("successes:") || l.starts_with("stack backtrace") {
                in_case = false;
            } else if shown < 400 {
                println!("  {}", l.chars().take(2000).collect::<String>());
                shown += 1;
            }
        }
    }
    let saved: Vec<String> = regression_files(crate_dir)
        .into_iter()
        .filter(|f| !before.contains(f))
        .map(|(p, _)| p.display().to_string())
        .collect();
    if saved.is_empty() {
        println!(
            "  (no proptest-regressions file changed: the case was saved before, \
             or persistence is off)"
        );
    } else {
        println!("  saved for `cargo test` to replay: {}", saved.join(", "));
    }
    println!(
        "  replay: cargo xtask fuzz {} --seed {seed} --cases {cases}\n  whole output: {}",
        t.name,
        log.display()
    );
    format!("{} failed (seed {seed})", t.name)
}

/// The crate's proptest regression files with their modification times.
fn regression_files(crate_dir: &Path) -> Vec<(PathBuf, Option<SystemTime>)> {
    let mut out = vec![];
    let mut dirs = vec![crate_dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if p.is_dir() && !name.starts_with('.') && name != "target" {
                dirs.push(p);
            } else if name.ends_with("proptest-regressions")
                || p.parent()
                    .is_some_and(|q| q.ends_with("proptest-regressions"))
            {
                let m = e.metadata().ok().and_then(|m| m.modified().ok());
                out.push((p, m));
            }
        }
    }
    out
}
