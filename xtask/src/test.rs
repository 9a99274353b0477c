//! `cargo xtask test [--only SUBSTRING] [--keep-going]`: every test of the project.
//!
//! In order: build `libhakmem.so` (or take `$HAKMEM_TEST_SO`, any preloadable malloc),
//! `cargo test --workspace`, the misuse model test again with a 1 ms purge delay, hakmem's
//! tests with the `checked` feature, its C-symbol test with the `c-override` feature,
//! `cargo doc` without warnings, prove the preload takes effect
//! (`tests/c/preload_check.c`), the C/C++ programs of `tests/c/`, the static check that no
//! exported function reaches a panic (`tests/tools/no_panic_paths.py`), `cargo xtask
//! install` into a temporary prefix used through pkg-config and the launcher, the process
//! and misuse tests, the C memory scenarios of `cargo xtask bench --memory` scaled down
//! (`MEMORY_SCALE_DOWN`), then real programs (`tests/real/*.sh`) whose output under the
//! preload must equal their plain output, under the release build and then (for hakmem)
//! under the checked build.
//! Stops at the first failed step unless `--keep-going`; `--only` runs just the steps whose
//! name contains SUBSTRING (never `cargo test`). Ends with the line `N passed, M failed`.

use crate::util::{cargo, root, stdout_of, target_dir, Result};
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const USAGE: &str = "usage: cargo xtask test [--only SUBSTRING] [--keep-going]";
/// The exported functions `tests/tools/no_panic_paths.py` checks, with every C++ `operator
/// new` and `operator delete` libstdc++ exports ([`cxx_operators`]).
const EXPORTS: [&str; 17] = [
    "malloc",
    "free",
    "calloc",
    "realloc",
    "reallocarray",
    "posix_memalign",
    "aligned_alloc",
    "memalign",
    "valloc",
    "pvalloc",
    "malloc_usable_size",
    "malloc_trim",
    "malloc_stats",
    "mallinfo2",
    "hakmem_stats",
    "cfree",
    "__libc_malloc",
];
/// The self-checking programs of `tests/c/`, in the order they run.
const C_TESTS: [&str; 8] = [
    "alignment.c",
    "integrity.c",
    "threads.c",
    "bad_input.c",
    "family.c",
    "glibc_internal.c",
    "cxx.cpp",
    "cxx_operators.cpp",
];
/// `tests/real/<name>.sh`, each run with and without the preload.
const REAL: [&str; 6] = ["python", "git", "gcc", "sort", "sqlite", "gxx"];
const LIMIT: Duration = Duration::from_secs(120);
/// One `cargo test` run, its build included (the workspace's takes a few minutes on two
/// cores): past this a test hangs, and the run fails naming it.
const CARGO_TEST_LIMIT: Duration = Duration::from_secs(30 * 60);

struct Run {
    only: Option<String>,
    keep_going: bool,
    passed: usize,
    failed: usize,
}

impl Run {
    fn wanted(&self, name: &str) -> bool {
        self.only.as_ref().is_none_or(|o| name.contains(o.as_str()))
    }

    /// Records one step; false if the run must stop here.
    fn record(&mut self, name: &str, result: Result) -> bool {
        match result {
            Ok(()) => {
                println!("ok {name}");
                self.passed += 1;
                true
            }
            Err(e) => {
                println!("FAILED {name}: {e}");
                self.failed += 1;
                self.keep_going
            }
        }
    }
}

pub fn run(args: &[String]) -> Result {
    let mut r = Run {
        only: None,
        keep_going: false,
        passed: 0,
        failed: 0,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--only" => r.only = Some(it.next().ok_or(USAGE)?.clone()),
            "--keep-going" => r.keep_going = true,
            _ => return Err(format!("unknown argument {a}\n{USAGE}")),
        }
    }
    let override_so = std::env::var_os("HAKMEM_TEST_SO").filter(|s| !s.is_empty());
    let so = match &override_so {
        Some(p) => std::fs::canonicalize(p)
            .map_err(|e| format!("HAKMEM_TEST_SO={}: {e}", Path::new(p).display()))?,
        None => crate::build::release_cdylib()?,
    };
    println!("testing the allocator {}", so.display());
    if r.only.is_none() {
        crate::util::run_within(cargo().args(["test", "--workspace"]), CARGO_TEST_LIMIT)?;
        // The misuse model again with purge ticks every millisecond: sparse slabs' free
        // blocks get parked between its steps, so stale frees meet parked blocks (the
        // default delay parks none on a fast machine, some on a slow one).
        crate::util::run_within(
            cargo()
                .args(["test", "-p", "hakmem", "--test", "misuse_model"])
                .env("HAKMEM_PURGE_DELAY_MS", "1"),
            CARGO_TEST_LIMIT,
        )?;
        // The checked build's checks as `HakMem` users get them (cargo feature `checked`).
        crate::util::run_within(
            cargo().args(["test", "-p", "hakmem", "--features", "checked"]),
            CARGO_TEST_LIMIT,
        )?;
        // The facade exports the C symbols only when asked (`libhakmem.so` is the preload
        // crate's): its test of that, with the feature `c-override`.
        crate::util::run_within(
            cargo()
                .args(["test", "-p", "hakmem", "--features", "c-override"])
                .args(["--test", "c_symbols"]),
            CARGO_TEST_LIMIT,
        )?;
        // Every public item documented, every intra-doc link resolved.
        crate::util::run(
            cargo()
                .args(["doc", "--workspace", "--no-deps"])
                .env("RUSTDOCFLAGS", "-D warnings"),
        )?;
    }
    steps(&mut r, &so, override_so.is_none());
    println!("{} passed, {} failed", r.passed, r.failed);
    if r.failed > 0 {
        return Err(format!("{} failed", r.failed));
    }
    Ok(())
}

/// Every step after the build and `cargo test`; returns early at a failure that stops the run.
fn steps(r: &mut Run, so: &Path, is_hakmem: bool) {
    let bin = target_dir().join("ctests");
    let mut programs = vec![];
    for src in std::iter::once("preload_check.c").chain(C_TESTS) {
        let name = format!("c/{}", src.split('.').next().unwrap());
        // The preload check runs whenever any program runs under the preload.
        if src != "preload_check.c" && !r.wanted(&name) {
            continue;
        }
        let exe = bin.join(src.split('.').next().unwrap());
        match compile(&root().join("tests/c").join(src), &exe) {
            Ok(()) => programs.push((name, exe)),
            Err(e) => {
                if !r.record(&format!("compile {name}"), Err(e)) {
                    return;
                }
            }
        }
    }
    let Some((check_name, check_exe)) = programs.first().cloned() else {
        return;
    };
    let base = so.file_name().unwrap().to_string_lossy().into_owned();
    let check = run_program(
        Command::new(&check_exe).arg(&base).env("LD_PRELOAD", so),
        LIMIT,
    );
    // Without the preload in effect, nothing below would test the allocator: always stop.
    let loaded = check.is_ok();
    if !r.record(&check_name, check) || !loaded {
        return;
    }
    for (name, exe) in &programs[1..] {
        if !r.record(
            name,
            run_program(Command::new(exe).env("LD_PRELOAD", so), LIMIT),
        ) {
            return;
        }
    }

    // No exported function of hakmem's may reach a panic, formatting or Rust allocation.
    if is_hakmem && r.wanted("panic-paths") {
        let result = cxx_operators().and_then(|operators| {
            let out = Command::new("python3")
                .arg(root().join("tests/tools/no_panic_paths.py"))
                .arg(so)
                .args(EXPORTS)
                .args(operators)
                .output();
            match out {
                Ok(o) if o.status.success() => Ok(()),
                Ok(o) => Err(String::from_utf8_lossy(&o.stdout).into_owned()),
                Err(e) => Err(format!("cannot run python3: {e}")),
            }
        });
        if !r.record("panic-paths", result) {
            return;
        }
    }

    // `cargo xtask install` into a temporary prefix, used through pkg-config and the launcher.
    if is_hakmem && r.wanted("install") {
        let result =
            crate::build::checked_cdylib().and_then(|checked| crate::install::test(so, &checked));
        if !r.record("install", result) {
            return;
        }
    }

    let only = r.only.clone().unwrap_or_default();
    let mut others = vec![];
    if r.only.is_none() || only.starts_with("process") {
        others.extend(crate::process::run(&target_dir().join("process-tests"), so));
    }
    if r.only.is_none() || only.starts_with("misuse") {
        if is_hakmem {
            match crate::build::checked_cdylib() {
                Ok(checked) => others.extend(crate::misuse::run(
                    &target_dir().join("misuse"),
                    so,
                    &checked,
                )),
                Err(e) => others.push(("misuse (checked build)".into(), Err(e))),
            }
        } else {
            println!("note: misuse tests skipped (they need hakmem's checked build)");
        }
    }
    for (name, result) in others {
        if r.wanted(&name) && !r.record(&name, result) {
            return;
        }
    }
    for name in crate::bench_memory::c_scenarios() {
        let step = format!("memory/{name}");
        if r.wanted(&step) && !r.record(&step, memory_scenario(name, so)) {
            return;
        }
    }

    for name in REAL {
        let step = format!("real/{name}");
        if r.wanted(&step) && !r.record(&step, real_program(name, so)) {
            return;
        }
    }
    // The checked build must raise no false alarm on real programs either.
    if is_hakmem
        && REAL
            .iter()
            .any(|n| r.wanted(&format!("real/{n} (checked)")))
    {
        let checked = match crate::build::checked_cdylib() {
            Ok(checked) => checked,
            Err(e) => {
                r.record("real (checked build)", Err(e));
                return;
            }
        };
        for name in REAL {
            let step = format!("real/{name} (checked)");
            if r.wanted(&step) && !r.record(&step, real_program(name, &checked)) {
                return;
            }
        }
    }
}

/// The replaceable C++ `operator new` and `operator delete` (their Itanium names): those
/// the C++ compiler's libstdc++ exports, all of which `libhakmem.so` must export too.
fn cxx_operators() -> Result<Vec<String>> {
    let lib = stdout_of(Command::new("c++").arg("-print-file-name=libstdc++.so.6"))?;
    let lib = lib.trim();
    let symbols = stdout_of(Command::new("nm").args(["-D", "--defined-only", lib]))?;
    let operators: Vec<String> = symbols
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .map(|name| name.split('@').next().unwrap_or(name).to_string())
        .filter(|name| {
            ["_Znw", "_Zna", "_Zdl", "_Zda"]
                .iter()
                .any(|p| name.starts_with(p))
        })
        .collect();
    if operators.len() < 20 {
        return Err(format!(
            "{lib} exports only {} operators new/delete",
            operators.len()
        ));
    }
    Ok(operators)
}

/// A memory scenario at 1/16 of its sizes and pauses: it checks its objects, and exits 0
/// only when all were intact.
fn memory_scenario(name: &str, so: &Path) -> Result {
    let exe = target_dir().join("memory-tests").join(name);
    compile(
        &crate::bench_memory::scenario_dir().join(format!("{name}.c")),
        &exe,
    )?;
    run_program(
        Command::new(&exe)
            .env("LD_PRELOAD", so)
            .env("MEMORY_SCALE_DOWN", "16"),
        LIMIT,
    )
}

fn compile(src: &Path, exe: &Path) -> Result {
    std::fs::create_dir_all(exe.parent().unwrap()).map_err(|e| e.to_string())?;
    let cxx = src.extension().is_some_and(|e| e == "cpp");
    let mut cmd = Command::new(if cxx { "c++" } else { "cc" });
    if cxx {
        cmd.arg("-std=c++17");
    }
    cmd.args(["-O1", "-g", "-pthread", "-Wall", "-o"])
        .arg(exe)
        .arg(src)
        .arg("-ldl");
    stdout_of(&mut cmd)
        .map(drop)
        .map_err(|e| format!("does not compile:\n{e}"))
}

/// Runs a program (in its own process group, killed whole at the time limit) and captures
/// its output.
pub(crate) fn output_limited(cmd: &mut Command, limit: Duration) -> Result<Output> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            buf
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let start = Instant::now();
    let status = loop {
        match child.try_wait().map_err(|e| e.to_string())? {
            Some(s) => break s,
            None if start.elapsed() > limit => {
                // SAFETY: kill(2) on the process group we created for this child.
                unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
                let _ = child.wait();
                return Err(format!("timed out after {}s", limit.as_secs()));
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    Ok(Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

/// A self-checking program: it must exit 0; on failure, what it printed is the reason.
fn run_program(cmd: &mut Command, limit: Duration) -> Result {
    let start = Instant::now();
    let out = output_limited(cmd, limit)?;
    if out.status.success() {
        println!("   ({:.1}s)", start.elapsed().as_secs_f64());
        return Ok(());
    }
    Err(format!(
        "{}\n{}{}",
        out.status,
        tail(&out.stdout),
        tail(&out.stderr)
    ))
}

/// The last lines of a program's output, for failure messages.
fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().collect();
    let mut s = lines[lines.len().saturating_sub(15)..].join("\n");
    if !s.is_empty() {
        s.push('\n');
    }
    s
}

/// `tests/real/<name>.sh`: its program must bind `malloc` to the allocator under the
/// preload, and the script must print the same with and without the preload.
fn real_program(name: &str, so: &Path) -> Result {
    let script = root().join("tests/real").join(format!("{name}.sh"));
    let text =
        std::fs::read_to_string(&script).map_err(|e| format!("{}: {e}", script.display()))?;
    let probe: Vec<&str> = text
        .lines()
        .find_map(|l| l.strip_prefix("# program:"))
        .ok_or("no `# program:` line")?
        .split_whitespace()
        .collect();
    let (program, args) = probe.split_first().ok_or("empty `# program:` line")?;
    let debug = output_limited(
        Command::new(program)
            .args(args)
            .env("LD_PRELOAD", so)
            .env("LD_DEBUG", "bindings"),
        LIMIT,
    )
    .map_err(|e| format!("{program} (is it installed?): {e}"))?;
    let so_text = so.display().to_string();
    let bound = String::from_utf8_lossy(&debug.stderr).lines().any(|l| {
        l.contains("normal symbol `malloc'")
            && l.contains(&format!(" to {so_text} ["))
            && !l.contains(&format!("binding file {so_text} "))
    });
    if !bound {
        return Err(format!(
            "`{}` under LD_PRELOAD does not bind malloc to {so_text} ({})",
            probe.join(" "),
            debug.status
        ));
    }
    let work = target_dir().join("real-tests").join(name);
    let mut outputs = vec![];
    for preload in [false, true] {
        let dir = work.join(if preload { "preload" } else { "plain" });
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut cmd = Command::new("bash");
        cmd.arg(&script).arg(&dir).env_remove("LD_PRELOAD");
        if preload {
            cmd.env("LD_PRELOAD", so);
        }
        let start = Instant::now();
        let out = output_limited(&mut cmd, LIMIT * 3)?;
        let how = if preload { "with the preload" } else { "plain" };
        if !out.status.success() {
            return Err(format!("{how}: {}\n{}", out.status, tail(&out.stderr)));
        }
        println!("   {how}: {:.1}s", start.elapsed().as_secs_f64());
        outputs.push(out.stdout);
    }
    if outputs[0] != outputs[1] {
        let (a, b) = (
            String::from_utf8_lossy(&outputs[0]),
            String::from_utf8_lossy(&outputs[1]),
        );
        let line = a.lines().zip(b.lines()).position(|(x, y)| x != y);
        let at = line.map_or("in length".into(), |i| format!("at line {}", i + 1));
        let show = |s: &str| {
            s.lines()
                .nth(line.unwrap_or(0))
                .unwrap_or("")
                .chars()
                .take(200)
                .collect::<String>()
        };
        return Err(format!(
            "output differs {at}: plain {:?}, preloaded {:?}",
            show(&a),
            show(&b)
        ));
    }
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}
