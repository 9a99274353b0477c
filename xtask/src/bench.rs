//! `cargo xtask bench`: hakmem against glibc, mimalloc and jemalloc.
//!
//! Builds the allocators (hakmem's cdylib; mimalloc and jemalloc wrapped in the preload
//! libraries of the separate `benches/` workspace; glibc as it is), compiles the C workloads
//! of `benches/workloads/`, runs each under `LD_PRELOAD` with each allocator, repetitions
//! interleaved, and reports the median wall time, the workload's own throughput and the
//! peak RSS (`target/bench-report/`). How to read it: docs/benchmarks.md.
//!
//! `--real` runs real programs (`bench_real`) through the same runner instead; `--memory`
//! the memory scenarios (`bench_memory`), their resident set sampled over time.

use crate::bench_report::{self, Cell, Row};
use crate::util::{cargo, root, Result};
use std::fs::{self, File};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const ALLOCATORS: [&str; 4] = ["hakmem", "glibc", "mimalloc", "jemalloc"];
/// Also accepted by `--allocators`: the checked build, to measure what the checks cost.
const KNOWN: [&str; 6] = [
    "hakmem",
    "glibc",
    "mimalloc",
    "jemalloc",
    "hakmem-checked",
    "tcmalloc",
];
/// gperftools' tcmalloc (Debian's `libtcmalloc-minimal4`, installed when missing): a peer
/// of the memory benchmark by default (issue 19 compares with it), of the others on request.
const TCMALLOC: (&str, &str) = (
    "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4",
    "libtcmalloc-minimal4",
);

/// Thread counts of the workloads modelled on single-threaded programs: with 2 threads, two
/// copies run side by side.
const SINGLE_THREADED: &[usize] = &[1, 2];
/// Thread counts of the models of multi-threaded programs: also 16, more threads than cores.
const THREADED: &[usize] = &[1, 2, 16];
/// sh6bench and sh8bench also run with 4 threads, as the original programs were measured.
const SHBENCH: &[usize] = &[1, 2, 4, 16];

/// Our workloads, in report order: `benches/workloads/<name>.c`, run as `<name> THREADS SCALE`
/// with each of its default thread counts (unless `--threads` says otherwise).
const WORKLOADS: [(&str, &[usize]); 15] = [
    ("churn", SINGLE_THREADED),
    ("larson", THREADED),
    ("sh6bench", SHBENCH),
    ("sh8bench", SHBENCH),
    ("xmalloc", THREADED),
    ("cache-scratch", THREADED),
    ("cache-thrash", THREADED),
    ("mstress", THREADED),
    ("random-mixed", SINGLE_THREADED),
    ("medium", SINGLE_THREADED),
    ("large", SINGLE_THREADED),
    ("large-replace", THREADED),
    ("large-threads", THREADED),
    ("realloc-chain", SINGLE_THREADED),
    ("calloc", SINGLE_THREADED),
];

const USAGE: &str = "usage: cargo xtask bench [--quick] [--reps N] [--scale N] [--threads 1,2,16] \
[--workloads a,b] [--allocators hakmem,glibc,mimalloc,jemalloc,tcmalloc,hakmem-checked] [--baseline REV|PATH.so] \
[--timeout SECS] [--external DIR | --real | --memory [--scenarios a,b]] [--instructions] \
[--paired N (--baseline REV|PATH.so | --allocators OTHER)]";

struct Opts {
    quick: bool,
    reps: usize,
    scale: usize,
    /// `--threads`: instead of each workload's default thread counts.
    threads: Option<Vec<usize>>,
    workloads: Option<Vec<String>>,
    allocators: Vec<String>,
    timeout: Duration,
    external: Option<PathBuf>,
    /// `--real`: the real programs of `bench_real` instead of the C workloads.
    real: bool,
    /// `--memory`: the memory scenarios of `bench_memory` instead.
    memory: bool,
    instructions: bool,
    /// `--baseline`: an earlier hakmem, measured in the same run as `hakmem-base`.
    baseline: Option<String>,
    /// `--paired N`: N pairs of runs per job of hakmem and the baseline, or of hakmem and the
    /// one other allocator `--allocators` names (see [`run_paired`]).
    paired: Option<usize>,
}

fn parse(args: &[String]) -> Result<Opts> {
    fn value<'a>(it: &mut impl Iterator<Item = &'a String>, flag: &str) -> Result<&'a str> {
        it.next()
            .map(|s| s.as_str())
            .ok_or(format!("{flag} needs a value\n{USAGE}"))
    }
    fn num(s: &str) -> Result<usize> {
        s.parse()
            .ok()
            .filter(|&n| n > 0)
            .ok_or(format!("not a positive number: {s}"))
    }
    fn list(s: &str) -> Vec<String> {
        s.split(',')
            .filter(|x| !x.is_empty())
            .map(String::from)
            .collect()
    }
    let (mut reps, mut scale, mut timeout, mut threads) = (None, None, None, None);
    let mut o = Opts {
        quick: false,
        reps: 0,
        scale: 0,
        threads: None,
        workloads: None,
        allocators: ALLOCATORS.map(String::from).to_vec(),
        timeout: Duration::ZERO,
        external: None,
        real: false,
        memory: false,
        instructions: false,
        baseline: None,
        paired: None,
    };
    let mut allocators_given = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => o.quick = true,
            "--instructions" => o.instructions = true,
            "--reps" => reps = Some(num(value(&mut it, a)?)?),
            "--scale" => scale = Some(num(value(&mut it, a)?)?),
            "--timeout" => timeout = Some(num(value(&mut it, a)?)?),
            "--threads" => {
                threads = Some(
                    list(value(&mut it, a)?)
                        .iter()
                        .map(|t| num(t))
                        .collect::<Result<Vec<_>>>()?,
                )
            }
            "--workloads" | "--scenarios" => o.workloads = Some(list(value(&mut it, a)?)),
            "--allocators" => {
                o.allocators = list(value(&mut it, a)?);
                allocators_given = true;
            }
            "--external" => o.external = Some(PathBuf::from(value(&mut it, a)?)),
            "--real" => o.real = true,
            "--memory" => o.memory = true,
            "--baseline" => o.baseline = Some(value(&mut it, a)?.to_string()),
            "--paired" => o.paired = Some(num(value(&mut it, a)?)?),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            _ => return Err(format!("unknown argument {a}\n{USAGE}")),
        }
    }
    if o.memory && !allocators_given {
        o.allocators.push("tcmalloc".into());
    }
    if let Some(bad) = o.allocators.iter().find(|a| !KNOWN.contains(&a.as_str())) {
        return Err(format!(
            "unknown allocator {bad} (known: {})",
            KNOWN.join(", ")
        ));
    }
    if o.real && o.memory {
        return Err(format!("--real or --memory, not both\n{USAGE}"));
    }
    if o.paired.is_some() {
        // The allocator hakmem is paired with: the baseline, else the one other one named.
        let others: Vec<&String> = o.allocators.iter().filter(|a| *a != "hakmem").collect();
        let partner = match (&o.baseline, allocators_given, others.as_slice()) {
            (Some(_), false, _) | (Some(_), true, []) => Some("hakmem-base".to_string()),
            (None, true, [other]) => Some(other.to_string()),
            _ => None,
        };
        if partner.is_none() || o.memory || o.instructions {
            return Err(format!(
                "--paired needs --baseline or one allocator besides hakmem in --allocators (not \
                 both), and takes neither --memory nor --instructions\n{USAGE}"
            ));
        }
        o.allocators = partner.into_iter().collect();
    }
    if (o.real || o.memory)
        && (scale.is_some() || threads.is_some() || o.external.is_some() || o.instructions)
    {
        return Err(format!(
            "--real and --memory take none of --scale, --threads, --external, --instructions\n{USAGE}"
        ));
    }
    o.threads = threads;
    if o.allocators.is_empty() || o.threads.as_ref().is_some_and(|t| t.is_empty()) {
        return Err(format!("nothing to run\n{USAGE}"));
    }
    // On 2 cores, quick takes about 1.5 minutes and full about 10 (builds aside). The real
    // programs run for seconds each in both modes; the memory scenarios too, 3 times each.
    o.reps = reps.unwrap_or(if o.quick || o.memory { 3 } else { 5 });
    o.scale = scale.unwrap_or(if o.quick { 1 } else { 3 });
    let default_timeout = if o.quick && !o.real && !o.memory {
        20
    } else {
        60
    };
    o.timeout = Duration::from_secs(timeout.unwrap_or(default_timeout) as u64);
    Ok(o)
}

/// An allocator ready to preload, or the reason it cannot be measured.
pub struct Allocator {
    pub name: String,
    pub preload: Option<PathBuf>,
    pub absent: Option<String>,
}

pub fn benches_dir() -> PathBuf {
    root().join("benches")
}

/// Where the C programs are compiled to.
fn c_bin_dir() -> PathBuf {
    benches_dir().join("target/c")
}

pub fn report_dir() -> PathBuf {
    root().join("target/bench-report")
}

/// Compiles one C program (`cc -O2 -pthread`) unless the binary is newer than its sources.
pub fn compile_c(src: &Path, out: &Path) -> Result {
    let dir = src.parent().expect("a source file is in a directory");
    let newest_src = fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .flatten()
        .filter(|e| e.path() == src || e.path().extension().is_some_and(|x| x == "h"))
        .filter_map(|e| e.metadata().and_then(|m| m.modified()).ok())
        .max();
    let built = fs::metadata(out).and_then(|m| m.modified()).ok();
    if built.is_some() && built >= newest_src {
        return Ok(());
    }
    fs::create_dir_all(out.parent().unwrap()).map_err(|e| e.to_string())?;
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let mut cmd = Command::new(cc);
    cmd.args(["-O2", "-pthread", "-Wall", "-o"])
        .arg(out)
        .arg(src)
        .arg("-ldl");
    crate::util::run(&mut cmd)
}

/// Builds (or finds) every requested allocator and checks with `benches/tools/probe.c` that
/// it really interposes the malloc family.
fn prepare_allocators(names: &[String], baseline: Option<&str>) -> Result<Vec<Allocator>> {
    let probe = c_bin_dir().join("probe");
    compile_c(&benches_dir().join("tools/probe.c"), &probe)?;
    let mut out = Vec::new();
    for name in names {
        eprintln!("bench: preparing {name}");
        let built: Result<Option<PathBuf>> = match name.as_str() {
            "glibc" => Ok(None),
            "hakmem" => crate::build::release_cdylib().map(Some),
            "hakmem-checked" => crate::build::checked_cdylib().map(Some),
            "hakmem-base" => crate::build::baseline_cdylib(baseline.unwrap_or("HEAD")).map(Some),
            "tcmalloc" => crate::bench_real::apt_install(&[TCMALLOC], "tcmalloc")
                .map(|()| Some(PathBuf::from(TCMALLOC.0))),
            peer => {
                let package = format!("{peer}-preload");
                build_benches_package(&package).and_then(|release| {
                    let so = release.join(format!("lib{}.so", package.replace('-', "_")));
                    so.exists()
                        .then_some(Some(so.clone()))
                        .ok_or(format!("{} was not produced", so.display()))
                })
            }
        };
        let (preload, absent) = match built {
            Ok(p) => {
                let absent = probe_allocator(&probe, p.as_deref()).err();
                (p, absent)
            }
            Err(e) => (None, Some(format!("build failed: {e}"))),
        };
        if let Some(why) = &absent {
            eprintln!("bench: {name} cannot be measured: {why}");
        }
        out.push(Allocator {
            name: name.clone(),
            preload,
            absent,
        });
    }
    Ok(out)
}

/// Builds a package of the `benches/` workspace (release profile); returns the directory
/// of its outputs.
pub fn build_benches_package(package: &str) -> Result<PathBuf> {
    let target = benches_dir().join("target");
    let mut cmd = cargo();
    cmd.args(["build", "--release", "-p", package, "--manifest-path"])
        .arg(benches_dir().join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target);
    crate::util::run(&mut cmd)?;
    Ok(target.join("release"))
}

fn probe_allocator(probe: &Path, preload: Option<&Path>) -> Result {
    let mut cmd = Command::new(probe);
    cmd.env_remove("LD_PRELOAD").stdin(Stdio::null());
    if let Some(p) = preload {
        cmd.env("LD_PRELOAD", p);
    }
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run the probe: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "the start-up probe failed: {}",
            describe_status(out.status)
        ));
    }
    let expected = preload.map(|p| fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf()));
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let (func, from) = line.split_once(' ').unwrap_or((line, "?"));
        let from_path = fs::canonicalize(from).unwrap_or_else(|_| PathBuf::from(from));
        let ok = match &expected {
            Some(e) => &from_path == e,
            None => from.contains("libc.so"),
        };
        if !ok {
            return Err(format!("does not interpose {func} (it resolves to {from})"));
        }
    }
    Ok(())
}

fn describe_status(s: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (_, Some(sig)) => format!("CRASH ({})", signal_name(sig)),
        (Some(c), _) => format!("FAIL (exit {c})"),
        _ => "FAIL".into(),
    }
}

fn signal_name(sig: i32) -> String {
    match sig {
        libc::SIGSEGV => "SIGSEGV".into(),
        libc::SIGABRT => "SIGABRT".into(),
        libc::SIGBUS => "SIGBUS".into(),
        libc::SIGILL => "SIGILL".into(),
        libc::SIGFPE => "SIGFPE".into(),
        libc::SIGKILL => "SIGKILL".into(),
        n => format!("signal {n}"),
    }
}

/// What a row compares: wall time, or for programs that run for a fixed time, the inverse of
/// the throughput they report, or the seconds they report after a key.
#[derive(Clone, Copy)]
pub enum Metric {
    Wall,
    Throughput,
    Seconds(&'static str),
}

pub struct Job {
    pub name: String,
    /// The thread count, for workloads that take one.
    pub threads: Option<usize>,
    pub exe: PathBuf,
    pub args: Vec<String>,
    pub cwd: PathBuf,
    pub stdin: Option<PathBuf>,
    /// The text after which the program prints its throughput (ops/s), if it does.
    pub throughput_key: Option<&'static str>,
    pub metric: Metric,
    /// The environment variable that gets the allocator's library: `LD_PRELOAD`, or another
    /// one for a driver that preloads it into one of the processes it starts.
    pub preload_var: &'static str,
    /// The text after which the program prints the peak RSS (KiB) to report, when it is not
    /// the whole process tree's (`wait4`): a server's, measured by its driver.
    pub rss_key: Option<&'static str>,
    /// The start of the line by which the program says it succeeded; the rest of that line
    /// (a checksum) must be the same in every run of the job, under every allocator.
    pub result_key: Option<&'static str>,
    /// The allocator is linked into the program (`#[global_allocator]`): under allocator A
    /// the runner starts `<exe>-A`, with nothing preloaded.
    pub linked: bool,
    /// Sample the resident set during the run and read the program's `idle:` lines
    /// ([`crate::bench_memory::Watch`]).
    pub rss_curve: bool,
}

pub struct Sample {
    pub wall: f64,
    pub rss_kib: u64,
    pub throughput: Option<f64>,
    pub cost: f64,
    /// The rest of the job's result line (see [`Job::result_key`]).
    pub result: Option<String>,
    /// Minor page faults of the run, its CPU time in the kernel and in all (seconds).
    pub minor_faults: u64,
    pub system: f64,
    pub cpu: f64,
    /// The resident set over the run, for a job with [`Job::rss_curve`].
    pub curve: Option<crate::bench_memory::Curve>,
}

impl Job {
    /// "churn t=2", "lua".
    fn label(&self) -> String {
        match self.threads {
            Some(t) => format!("{} t={t}", self.name),
            None => self.name.clone(),
        }
    }

    /// A job whose program is measured by wall time and peak RSS of the whole run, and
    /// checked only by its exit status unless told otherwise.
    pub fn new(name: &str, exe: PathBuf, args: Vec<String>, cwd: PathBuf) -> Job {
        Job {
            name: name.into(),
            threads: None,
            exe,
            args,
            cwd,
            stdin: None,
            throughput_key: None,
            metric: Metric::Wall,
            preload_var: "LD_PRELOAD",
            rss_key: None,
            result_key: None,
            linked: false,
            rss_curve: false,
        }
    }
}

/// An error naming the first of the `chosen` names (`--workloads`) that is not `known`.
pub fn check_names(what: &str, chosen: Option<&[String]>, known: &[&str]) -> Result {
    match chosen
        .into_iter()
        .flatten()
        .find(|c| !known.contains(&c.as_str()))
    {
        Some(bad) => Err(format!(
            "unknown {what} {bad} (known: {})",
            known.join(", ")
        )),
        None => Ok(()),
    }
}

fn own_jobs(o: &Opts) -> Result<Vec<Job>> {
    let known: Vec<&str> = WORKLOADS.iter().map(|(name, _)| *name).collect();
    check_names("workload", o.workloads.as_deref(), &known)?;
    let chosen = WORKLOADS.iter().filter(|(name, _)| {
        o.workloads
            .as_ref()
            .is_none_or(|w| w.iter().any(|x| x == name))
    });
    let mut jobs = Vec::new();
    for &(name, default_threads) in chosen {
        let exe = c_bin_dir().join(name);
        compile_c(&benches_dir().join(format!("workloads/{name}.c")), &exe)?;
        for &t in o.threads.as_deref().unwrap_or(default_threads) {
            jobs.push(Job {
                threads: Some(t),
                throughput_key: Some("throughput:"),
                ..Job::new(
                    name,
                    exe.clone(),
                    vec![t.to_string(), o.scale.to_string()],
                    root(),
                )
            });
        }
    }
    Ok(jobs)
}

/// The mimalloc-bench programs and their usual arguments (as its bench.sh runs them):
/// name, arguments (`{T}` = threads, `{2T}` = twice that, `{input:a|b}` = the first of these
/// files found relative to DIR), whether it takes a thread count, throughput key, metric.
const EXTERNAL: [(&str, &str, bool, Option<&str>, Metric); 16] = [
    (
        "cfrac",
        "17545186520507317056371138836327483792789528",
        false,
        None,
        Metric::Wall,
    ),
    (
        "espresso",
        "{input:largest.espresso|espresso/largest.espresso|../../bench/espresso/largest.espresso}",
        false,
        None,
        Metric::Wall,
    ),
    (
        "barnes",
        "<{input:barnes/input|../../bench/barnes/input}",
        false,
        None,
        Metric::Wall,
    ),
    (
        "larson",
        "5 8 1000 5000 100 4141 {T}",
        true,
        Some("Throughput ="),
        Metric::Throughput,
    ),
    (
        "larson-sized",
        "5 8 1000 5000 100 4141 {T}",
        true,
        Some("Throughput ="),
        Metric::Throughput,
    ),
    ("sh6bench", "{2T}", true, None, Metric::Wall),
    ("sh8bench", "{2T}", true, None, Metric::Wall),
    (
        "xmalloc-test",
        "-w {T} -t 5 -s 64",
        true,
        None,
        Metric::Seconds("rtime:"),
    ),
    (
        "cache-scratch",
        "{T} 1000 1 2000000 {T}",
        true,
        None,
        Metric::Wall,
    ),
    (
        "cache-thrash",
        "{T} 1000 1 2000000 {T}",
        true,
        None,
        Metric::Wall,
    ),
    ("mstress", "{T} 50 25", true, None, Metric::Wall),
    (
        "rptest",
        "{T} 0 1 2 500 1000 100 8 16000",
        true,
        Some("..."),
        Metric::Throughput,
    ),
    ("alloc-test", "{T}", true, None, Metric::Wall),
    ("glibc-simple", "", false, None, Metric::Wall),
    ("glibc-thread", "{T}", true, Some(""), Metric::Throughput),
    ("malloc-large", "", false, None, Metric::Wall),
];

/// Thread counts of the external programs that take one (their work grows with it).
const EXTERNAL_THREADS: &[usize] = &[1, 2];

fn external_jobs(o: &Opts, dir: &Path) -> Result<Vec<Job>> {
    let dir = fs::canonicalize(dir).map_err(|e| format!("--external {}: {e}", dir.display()))?;
    let mut jobs = Vec::new();
    for (name, args, threaded, key, metric) in EXTERNAL {
        if o.workloads
            .as_ref()
            .is_some_and(|w| !w.iter().any(|x| x == name))
        {
            continue;
        }
        let exe = dir.join(name);
        if !exe.is_file() {
            eprintln!("bench: external {name}: not in {}, skipped", dir.display());
            continue;
        }
        let threads = match (threaded, &o.threads) {
            (false, _) => vec![1],
            (true, Some(t)) => t.clone(),
            (true, None) => EXTERNAL_THREADS.to_vec(),
        };
        'threads: for t in threads {
            let (mut argv, mut stdin) = (Vec::new(), None);
            for a in args.split_whitespace() {
                let (redirect, a) = a.strip_prefix('<').map_or((false, a), |r| (true, r));
                let a = a
                    .replace("{2T}", &(2 * t).to_string())
                    .replace("{T}", &t.to_string());
                let a = match a.strip_prefix("{input:").and_then(|s| s.strip_suffix('}')) {
                    None => a,
                    Some(alts) => {
                        match alts.split('|').map(|f| dir.join(f)).find(|p| p.is_file()) {
                            Some(p) => p.display().to_string(),
                            None => {
                                eprintln!(
                                    "bench: external {name}: input ({alts}) not found, skipped"
                                );
                                break 'threads;
                            }
                        }
                    }
                };
                if redirect {
                    stdin = Some(PathBuf::from(a));
                } else {
                    argv.push(a);
                }
            }
            jobs.push(Job {
                threads: Some(t),
                stdin,
                throughput_key: key,
                metric,
                ..Job::new(&format!("ext:{name}"), exe.clone(), argv, dir.clone())
            });
        }
    }
    if jobs.is_empty() {
        return Err(format!(
            "no mimalloc-bench program found in {}",
            dir.display()
        ));
    }
    Ok(jobs)
}

/// The first number after `key` in `text` (for an empty key, at the start).
fn number_after(text: &str, key: &str) -> Option<f64> {
    let rest = &text[text.find(key)? + key.len()..];
    let rest = rest.trim_start_matches([' ', '\t']);
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// What the kernel counted of a run (`wait4`).
struct Usage {
    peak_rss_kib: u64,
    minor_faults: u64,
    /// CPU seconds in the kernel, and in user space.
    system: f64,
    user: f64,
}

/// Waits for `pid`, returning its wait status, its resource usage and when it ended.
fn wait_child(pid: libc::pid_t) -> (i32, Usage, Instant) {
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 writes it and the status.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        let interrupted = std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR);
        if r == pid || !(r == -1 && interrupted) {
            break;
        }
    }
    let usage = Usage {
        peak_rss_kib: ru.ru_maxrss as u64,
        minor_faults: ru.ru_minflt as u64,
        system: ru.ru_stime.tv_sec as f64 + ru.ru_stime.tv_usec as f64 * 1e-6,
        user: ru.ru_utime.tv_sec as f64 + ru.ru_utime.tv_usec as f64 * 1e-6,
    };
    (status, usage, Instant::now())
}

/// Runs a job once under an allocator: a sample, or why there is none (CRASH, FAIL, TIMEOUT).
fn run_once(
    job: &Job,
    alloc: &Allocator,
    timeout: Duration,
    log: &Path,
) -> std::result::Result<Sample, String> {
    let out = File::create(log).map_err(|e| format!("FAIL (log {}: {e})", log.display()))?;
    let stdin = match &job.stdin {
        Some(p) => File::open(p)
            .map_err(|e| format!("FAIL ({}: {e})", p.display()))?
            .into(),
        None => Stdio::null(),
    };
    let (exe, preload) = if job.linked {
        let mut exe = job.exe.clone().into_os_string();
        exe.push(format!("-{}", alloc.name));
        (PathBuf::from(exe), None)
    } else {
        (job.exe.clone(), alloc.preload.as_deref())
    };
    if job.linked && !exe.is_file() {
        let name = exe.file_name().unwrap_or_default().to_string_lossy();
        return Err(format!("ABSENT (no build {name})"));
    }
    let mut cmd = Command::new(&exe);
    cmd.args(&job.args)
        .current_dir(&job.cwd)
        .stdin(stdin)
        .stdout(out.try_clone().map_err(|e| format!("FAIL ({e})"))?)
        .stderr(out)
        .env_remove("LD_PRELOAD")
        .env_remove(job.preload_var)
        .process_group(0); // its own group, so that a timeout kills its children too
    if let Some(p) = preload {
        cmd.env(job.preload_var, p);
    }
    let start = Instant::now();
    let child = cmd
        .spawn()
        .map_err(|e| format!("FAIL (cannot start: {e})"))?;
    let pid = child.id() as libc::pid_t;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || tx.send(wait_child(pid)));
    let mut watch = job
        .rss_curve
        .then(|| crate::bench_memory::Watch::new(pid, log, start));
    let deadline = start + timeout;
    let (status, usage, end) = loop {
        let tick = match watch {
            Some(_) => crate::bench_memory::SAMPLE_EVERY,
            None => timeout,
        };
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(tick.min(left)) {
            Ok(r) => break r,
            Err(_) if Instant::now() < deadline => {
                if let Some(w) = &mut watch {
                    w.sample();
                }
            }
            Err(_) => {
                // SIGTERM first, so that a driver can stop what it started and clean up; what
                // is left of the group after two seconds is killed.
                // SAFETY: kill(2) on the group we created; its leader is not reaped before the
                // waiting thread reports, so the group id is still ours.
                unsafe { libc::kill(-pid, libc::SIGTERM) };
                let ended = rx.recv_timeout(Duration::from_secs(2)).is_ok();
                // SAFETY: as above; after the leader ended, the signal reaches what remains of
                // its group (a group id is not reused while the group has members).
                unsafe { libc::kill(-pid, libc::SIGKILL) };
                if !ended {
                    let _ = rx.recv();
                }
                return Err(format!("TIMEOUT (>{} s)", timeout.as_secs()));
            }
        }
    };
    drop(child);
    if libc::WIFSIGNALED(status) {
        return Err(format!("CRASH ({})", signal_name(libc::WTERMSIG(status))));
    }
    if libc::WEXITSTATUS(status) != 0 {
        return Err(format!("FAIL (exit {})", libc::WEXITSTATUS(status)));
    }
    let text = fs::read_to_string(log).unwrap_or_default();
    let wall = (end - start).as_secs_f64();
    let throughput = job.throughput_key.and_then(|k| number_after(&text, k));
    let cost = match job.metric {
        Metric::Wall => Some(wall),
        Metric::Throughput => throughput.filter(|&x| x > 0.0).map(|x| 1.0 / x),
        Metric::Seconds(k) => number_after(&text, k),
    };
    let rss_kib = match job.rss_key {
        None => Some(usage.peak_rss_kib),
        Some(k) => number_after(&text, k).map(|x| x as u64),
    };
    let result = match job.result_key {
        None => None,
        Some(k) => match text.lines().rev().find_map(|l| l.strip_prefix(k)) {
            Some(r) => Some(r.trim().to_string()),
            None => return Err(format!("FAIL (no {k:?} line in its output)")),
        },
    };
    let curve = watch.map(|w| w.finish()).transpose()?;
    match (cost, rss_kib) {
        (Some(cost), Some(rss_kib)) if job.throughput_key.is_none() || throughput.is_some() => {
            Ok(Sample {
                wall,
                rss_kib,
                throughput,
                cost,
                result,
                minor_faults: usage.minor_faults,
                system: usage.system,
                cpu: usage.system + usage.user,
                curve,
            })
        }
        _ => Err("FAIL (no result in its output)".into()),
    }
}

pub fn fmt_duration(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The first quartile, the median and the third quartile of `v` (not empty; the quartiles
/// are the medians of the lower and the upper half, the middle value left out).
pub fn quartiles(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    let half = v.len() / 2;
    let upper = v.len() - half;
    (
        median(v[..half.max(1)].to_vec()),
        median(v.clone()),
        median(v[upper.min(v.len() - 1)..].to_vec()),
    )
}

/// The mean of the lowest quarter of `v` (at least one value): a run's CPU time only grows
/// when the machine is busy (other processes' cache and memory traffic, a slower
/// frequency), so the lowest runs are the closest to the program's own cost.
pub fn lowest_quarter_mean(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = (v.len() / 4).max(1).min(v.len());
    v[..n].iter().sum::<f64>() / n as f64
}

/// `--paired N`: for each job, N pairs of runs, one under hakmem and one under its partner
/// (the baseline or another allocator; `allocs` is exactly those two, hakmem first), back to
/// back, the order swapped from one pair to the next. Each pair gives the ratio of hakmem's
/// cost to the partner's (the inverse of the throughput the workload reports, else the wall
/// time); a row reports the ratios' median and quartiles. The two runs of a pair share the
/// machine's state of the moment. A second estimate compares CPU times (user and system):
/// the mean of each allocator's lowest quarter of runs ([`lowest_quarter_mean`]). On this
/// project's shared VM the lowest CPU times of 12-15 runs each separated a 5% change that
/// two paired runs' medians had left within their quartiles (`docs/performance.md`, "The
/// fast paths").
fn run_paired(
    jobs: &[Job],
    allocs: &[Allocator],
    pairs: usize,
    limit: Duration,
    logs: &Path,
) -> Result {
    let mut md = format!(
        "# Paired runs: {} / {}\n\n{pairs} pairs per row, the order swapped from \
         one pair to the next; cost = 1 / throughput (else wall time); lower is better. \
         Lowest CPU: the ratio of the two allocators' lowest quarters of CPU time (user and \
         system).\n\n\
         | workload | threads | median | quartiles | lowest CPU |\n|---|---:|---:|---:|---:|\n",
        allocs[0].name, allocs[1].name
    );
    let mut medians = Vec::new();
    for job in jobs {
        let mut ratios = Vec::new();
        let mut cpu = [Vec::new(), Vec::new()];
        let mut peak_kib = 0;
        for i in 0..pairs {
            let mut cost = [0.0; 2];
            for k in 0..2 {
                let a = if i % 2 == 0 { k } else { 1 - k };
                warm_huge_pages(peak_kib << 10);
                let log = logs.join(format!("paired-{}.log", allocs[a].name));
                match run_once(job, &allocs[a], limit, &log) {
                    Ok(s) => {
                        peak_kib = peak_kib.max(s.rss_kib);
                        cost[a] = s.throughput.map_or(s.wall, |t| 1.0 / t);
                        cpu[a].push(s.cpu);
                    }
                    Err(e) => return Err(format!("{} {}: {e}", job.label(), allocs[a].name)),
                }
            }
            ratios.push(cost[0] / cost[1]);
        }
        let (q1, med, q3) = quartiles(ratios);
        let [cpu0, cpu1] = cpu.map(lowest_quarter_mean);
        let low = cpu0 / cpu1;
        eprintln!(
            "{}: {med:.3} ({q1:.3} – {q3:.3}); lowest CPU {low:.3}",
            job.label()
        );
        let threads = job.threads.map_or(String::new(), |t| t.to_string());
        md += &format!(
            "| {} | {threads} | {med:.3} | {q1:.3} – {q3:.3} | {low:.3} |\n",
            job.name
        );
        medians.push(med);
    }
    let geo = (medians.iter().map(|m| m.ln()).sum::<f64>() / medians.len() as f64).exp();
    md += &format!("| **geometric mean of the medians** | | {geo:.3} | | |\n");
    let out = report_dir().join("paired.md");
    fs::write(&out, &md).map_err(|e| e.to_string())?;
    print!("{md}");
    eprintln!("bench: wrote {}", out.display());
    Ok(())
}

/// What every job × allocator of a run gave: its samples, one per repetition, or the failure
/// that stopped its repetitions and the log of that run.
pub struct Runs {
    pub samples: Vec<Vec<Vec<Sample>>>,
    pub failures: Vec<Vec<Option<(String, PathBuf)>>>,
}

impl Runs {
    /// The report's cell of job `j` under allocator `a`: absent, failed, or what `ok` makes of
    /// its samples.
    pub fn cell(
        &self,
        allocs: &[Allocator],
        j: usize,
        a: usize,
        ok: impl FnOnce(&[Sample]) -> Cell,
    ) -> Cell {
        if let Some(why) = &allocs[a].absent {
            Cell::Absent(why.clone())
        } else if let Some((e, log)) = &self.failures[j][a] {
            Cell::Failed(e.clone(), log.clone())
        } else {
            ok(&self.samples[j][a])
        }
    }
}

/// Jobs whose peak RSS is below this get no warm-up (see [`warm_huge_pages`]).
const WARM_MIN_BYTES: u64 = 64 << 20;

/// Before a run of a job that holds `bytes` at its peak (the most any run of it has held so
/// far; nothing below [`WARM_MIN_BYTES`]), a child process maps that much memory as huge
/// pages, touches it and exits, so that every allocator's run starts from the same state of
/// the machine's free memory. Without it, on a VM, a run that faults in huge pages right
/// after a run that used small pages pays for it in kernel time: `large-replace 1 3` under
/// hakmem took 1.50-2.00 s after jemalloc (0.44-0.89 s system time) and 1.09-1.19 s after
/// mimalloc (0.07-0.13 s); mimalloc after jemalloc 1.54-1.62 s, after hakmem 1.21-1.30 s.
/// With this warm-up, 1.18-1.28 s (hakmem) and 1.35-1.45 s (mimalloc) after jemalloc. A
/// child, because a process's peak RSS passes to the children it forks (`ru_maxrss`).
fn warm_huge_pages(bytes: u64) {
    if bytes < WARM_MIN_BYTES {
        return;
    }
    let len = bytes as usize;
    // SAFETY: the child only maps and writes memory of its own and leaves with `_exit` (no
    // allocation, no lock: the harness's other threads do not exist in it); the parent
    // waits for it.
    unsafe {
        let pid = libc::fork();
        if pid == 0 {
            let (rw, anon) = (
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            );
            let p = libc::mmap(core::ptr::null_mut(), len, rw, anon, -1, 0);
            if p != libc::MAP_FAILED {
                libc::madvise(p, len, libc::MADV_HUGEPAGE);
                for i in (0..len).step_by(4096) {
                    (p as *mut u8).add(i).write_volatile(1);
                }
            }
            libc::_exit(0);
        }
        while pid > 0
            && libc::waitpid(pid, core::ptr::null_mut(), 0) < 0
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
        {}
    }
}

/// Runs every job under every allocator `reps` times, interleaved: for each job, every
/// allocator once per repetition (A B C D A B C D ...); hakmem goes last so that its timeout
/// can follow the peers' times. Each run's output goes to `logs`.
fn run_jobs(jobs: &[Job], allocs: &[Allocator], reps: usize, limit: Duration, logs: &Path) -> Runs {
    let mut order: Vec<usize> = (0..allocs.len()).collect();
    order.sort_by_key(|&a| allocs[a].name == "hakmem");
    let mut samples: Vec<Vec<Vec<Sample>>> = jobs
        .iter()
        .map(|_| allocs.iter().map(|_| Vec::new()).collect())
        .collect();
    let mut failures: Vec<Vec<Option<(String, PathBuf)>>> =
        jobs.iter().map(|_| vec![None; allocs.len()]).collect();
    // Per job, the first result line printed and by which allocator.
    let mut first_result: Vec<Option<(String, &str)>> = jobs.iter().map(|_| None).collect();
    let total = jobs.len() * reps * allocs.len();
    let (mut done, mut runs, mut running) = (0usize, 0usize, 0f64);
    let started = Instant::now();
    for (j, job) in jobs.iter().enumerate() {
        let mut fastest: Option<f64> = None;
        for rep in 0..reps {
            for &a in &order {
                done += 1;
                let alloc = &allocs[a];
                if alloc.absent.is_some() || failures[j][a].is_some() {
                    continue;
                }
                // Twenty times the fastest run so far, within [5 s, --timeout].
                let timeout = fastest.map_or(limit, |f| {
                    Duration::from_secs_f64((20.0 * f).max(5.0).min(limit.as_secs_f64()))
                });
                let log = logs.join(format!(
                    "{}{}-{}.log",
                    job.name.replace(':', "_"),
                    job.threads.map_or(String::new(), |t| format!("-t{t}")),
                    alloc.name
                ));
                let peak_kib = samples[j].iter().flatten().map(|s| s.rss_kib).max();
                warm_huge_pages(peak_kib.unwrap_or(0) << 10);
                let t0 = Instant::now();
                let result = run_once(job, alloc, timeout, &log).and_then(|s| {
                    match (&s.result, &first_result[j]) {
                        (Some(r), Some((want, by))) if r != want => {
                            Err(format!("FAIL (printed {r:?}, {by} printed {want:?})"))
                        }
                        (Some(r), None) => {
                            first_result[j] = Some((r.clone(), &alloc.name));
                            Ok(s)
                        }
                        _ => Ok(s),
                    }
                });
                running += t0.elapsed().as_secs_f64();
                runs += 1;
                let shown = match &result {
                    Ok(s) => format!("{:.3} s  {:.1} MiB", s.wall, s.rss_kib as f64 / 1024.0),
                    Err(e) => e.clone(),
                };
                let left = running / runs as f64 * (total - done) as f64;
                eprintln!(
                    "[{done:>4}/{total}] {} {:<8} rep {}/{}: {shown}   (about {} left)",
                    job.label(),
                    alloc.name,
                    rep + 1,
                    reps,
                    fmt_duration(left)
                );
                match result {
                    Ok(s) => {
                        fastest = Some(fastest.map_or(s.wall, |f| f.min(s.wall)));
                        samples[j][a].push(s);
                    }
                    Err(e) => failures[j][a] = Some((e, log)),
                }
            }
        }
    }
    eprintln!(
        "bench: {} runs in {}",
        runs,
        fmt_duration(started.elapsed().as_secs_f64())
    );
    Runs { samples, failures }
}

pub fn run(args: &[String]) -> Result {
    let o = parse(args)?;
    let jobs = match (&o.external, o.instructions, o.real, o.memory) {
        (_, true, _, _) => Vec::new(),
        (_, _, true, _) => crate::bench_real::jobs(o.workloads.as_deref())?,
        (_, _, _, true) => crate::bench_memory::jobs(o.workloads.as_deref())?,
        (Some(dir), _, _, _) => external_jobs(&o, dir)?,
        (None, _, _, _) => own_jobs(&o)?,
    };
    let layout = match (o.real, o.memory) {
        (true, _) => &bench_report::REAL,
        (_, true) => &bench_report::MEMORY,
        _ => &bench_report::SUITE,
    };
    let names = match o.paired {
        // hakmem, then its partner (the options' one allocator since they were read).
        Some(_) => vec!["hakmem".to_string(), o.allocators[0].clone()],
        None if o.baseline.is_some() => [&o.allocators[..], &["hakmem-base".to_string()]].concat(),
        None => o.allocators.clone(),
    };
    let allocs = prepare_allocators(&names, o.baseline.as_deref())?;
    let logs = report_dir().join(layout.logs);
    fs::create_dir_all(&logs).map_err(|e| e.to_string())?;
    if o.instructions {
        return crate::bench_instr::run(
            &allocs,
            &c_bin_dir(),
            &benches_dir().join("tools/instr.c"),
        );
    }
    if let Some(pairs) = o.paired {
        return run_paired(&jobs, &allocs, pairs, o.timeout, &logs);
    }
    let runs = run_jobs(&jobs, &allocs, o.reps, o.timeout, &logs);
    let names: Vec<String> = allocs.iter().map(|a| a.name.clone()).collect();
    let (report, chart) = (
        report_dir().join(layout.report),
        report_dir().join(layout.chart),
    );
    let (md, svg) = if o.memory {
        let mode = format!("memory scenarios (repetitions {})", o.reps);
        crate::bench_memory::report(&jobs, &allocs, &runs, &mode)
    } else {
        let rows: Vec<Row> = jobs
            .iter()
            .enumerate()
            .map(|(j, job)| Row {
                workload: job.name.clone(),
                threads: job.threads,
                fixed_time: !matches!(job.metric, Metric::Wall),
                cells: (0..allocs.len())
                    .map(|a| {
                        runs.cell(&allocs, j, a, |s| {
                            let tp: Vec<f64> = s.iter().filter_map(|x| x.throughput).collect();
                            Cell::Ok {
                                wall: median(s.iter().map(|x| x.wall).collect()),
                                cost: median(s.iter().map(|x| x.cost).collect()),
                                rss_kib: median(s.iter().map(|x| x.rss_kib as f64).collect()),
                                throughput: (!tp.is_empty()).then(|| median(tp)),
                            }
                        })
                    })
                    .collect(),
            })
            .collect();
        let mode = if o.real {
            format!(
                "real programs (repetitions {}): {}",
                o.reps,
                crate::bench_real::versions(&jobs)
            )
        } else {
            let threads = match &o.threads {
                Some(t) => t
                    .iter()
                    .map(|t| t.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
                None => "per workload".into(),
            };
            format!(
                "{} (repetitions {}, scale {}, threads {threads}{})",
                if o.quick { "quick" } else { "full" },
                o.reps,
                o.scale,
                o.external.as_ref().map_or(String::new(), |d| format!(
                    ", external programs of {}",
                    d.display()
                ))
            )
        };
        let md = bench_report::markdown(layout, &names, &rows, &mode, &bench_report::machine());
        let svg = bench_report::svg(&names, &rows);
        if svg.is_none() {
            eprintln!("bench: no chart (it needs mimalloc as the reference)");
        }
        (md, svg)
    };
    println!("{md}");
    fs::write(&report, &md).map_err(|e| e.to_string())?;
    if let Some(svg) = svg {
        fs::write(&chart, svg).map_err(|e| e.to_string())?;
    }
    eprintln!("bench: wrote {} and {}", report.display(), chart.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowest_quarter_mean_takes_the_fastest_runs() {
        assert_eq!(lowest_quarter_mean(vec![3.0]), 3.0);
        assert_eq!(lowest_quarter_mean(vec![5.0, 2.0, 9.0]), 2.0);
        assert_eq!(
            lowest_quarter_mean(vec![8.0, 1.0, 7.0, 3.0, 9.0, 6.0, 4.0, 2.0]),
            1.5
        );
    }

    #[test]
    fn quartiles_are_the_medians_of_the_halves() {
        assert_eq!(quartiles(vec![3.0]), (3.0, 3.0, 3.0));
        assert_eq!(quartiles(vec![4.0, 1.0]), (1.0, 2.5, 4.0));
        assert_eq!(quartiles(vec![5.0, 1.0, 3.0]), (1.0, 3.0, 5.0));
        assert_eq!(quartiles(vec![8.0, 2.0, 6.0, 4.0]), (3.0, 5.0, 7.0));
        assert_eq!(quartiles(vec![9.0, 1.0, 7.0, 3.0, 5.0]), (2.0, 5.0, 8.0));
    }

    /// `--paired` pairs hakmem with the baseline, or with the one other allocator named, and
    /// refuses anything else.
    #[test]
    fn paired_takes_one_partner() {
        let opts = |s: &str| parse(&s.split(' ').map(String::from).collect::<Vec<_>>());
        for (args, partner) in [
            ("--paired 4 --baseline HEAD~1", "hakmem-base"),
            (
                "--paired 4 --baseline HEAD~1 --allocators hakmem",
                "hakmem-base",
            ),
            ("--paired 4 --allocators mimalloc", "mimalloc"),
            (
                "--paired 4 --allocators hakmem,hakmem-checked",
                "hakmem-checked",
            ),
        ] {
            assert_eq!(opts(args).unwrap().allocators, [partner], "{args}");
        }
        for bad in [
            "--paired 4",
            "--paired 4 --allocators hakmem",
            "--paired 4 --allocators mimalloc,jemalloc",
            "--paired 4 --baseline HEAD~1 --allocators mimalloc",
            "--paired 4 --allocators mimalloc --memory",
        ] {
            assert!(opts(bad).is_err(), "{bad} was accepted");
        }
    }

    /// The warm-up runs in a child: a child the harness forks later reports its own peak
    /// RSS, not the warm-up's (done in the harness itself, every later child reported the
    /// harness's peak, which passes to forked children).
    #[test]
    #[expect(
        clippy::zombie_processes,
        reason = "reaped by wait_child (wait4), as in run_once"
    )]
    fn the_warm_up_leaves_later_childrens_peak_rss_alone() {
        warm_huge_pages(WARM_MIN_BYTES * 2);
        let child = Command::new("true").spawn().expect("spawn true");
        let (_, usage, _) = wait_child(child.id() as libc::pid_t);
        assert!(
            usage.peak_rss_kib << 10 < WARM_MIN_BYTES,
            "`true` reported a peak of {} KiB",
            usage.peak_rss_kib
        );
    }
}
