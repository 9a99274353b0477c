//! `cargo xtask bench --real`: real programs under each allocator.
//!
//! Debian's lua5.4, perl, ruby, python3, sqlite3 and redis-server each run a workload script
//! of ours (`benches/real/`, a few seconds each), timed by the runner of `bench` like the C
//! workloads. Programs that are missing are installed with apt-get first. Every script ends
//! with a line starting "ok" and a checksum of its work, which must be the same in every run.
//! What each script models: its header and docs/benchmarks.md.

use crate::bench::{benches_dir, Job};
use crate::util::Result;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One real program: how it runs its script, and what it needs installed.
struct Program {
    /// Its name in `--workloads` and in the report.
    name: &'static str,
    /// What runs, by absolute path: Debian's build, not another one earlier on PATH.
    exe: &'static str,
    /// Its arguments; `{script}` stands for the script's path.
    args: &'static [&'static str],
    /// The script, in `benches/real/`.
    script: &'static str,
    /// The script is the program's stdin rather than an argument.
    script_on_stdin: bool,
    /// Files the run needs and the Debian packages that provide them; the first is the
    /// program whose version the report gives.
    needs: &'static [(&'static str, &'static str)],
    /// For a driver script that starts the measured program itself: the environment
    /// variable through which it gets the allocator's library (it preloads it into that
    /// program alone), and the key after which it prints that program's peak RSS.
    driver: Option<(&'static str, &'static str)>,
}

/// In report order.
const PROGRAMS: [Program; 6] = [
    Program {
        name: "lua",
        exe: "/usr/bin/lua5.4",
        args: &["{script}"],
        script: "lua.lua",
        script_on_stdin: false,
        needs: &[("/usr/bin/lua5.4", "lua5.4")],
        driver: None,
    },
    Program {
        name: "perl",
        exe: "/usr/bin/perl",
        args: &["{script}"],
        script: "perl.pl",
        script_on_stdin: false,
        needs: &[("/usr/bin/perl", "perl")],
        driver: None,
    },
    Program {
        name: "ruby",
        exe: "/usr/bin/ruby",
        args: &["{script}"],
        script: "ruby.rb",
        script_on_stdin: false,
        needs: &[("/usr/bin/ruby", "ruby")],
        driver: None,
    },
    Program {
        name: "python",
        exe: "/usr/bin/python3",
        args: &["{script}"],
        script: "python.py",
        script_on_stdin: false,
        needs: &[("/usr/bin/python3", "python3")],
        driver: None,
    },
    Program {
        name: "sqlite",
        exe: "/usr/bin/sqlite3",
        args: &[":memory:"],
        script: "sqlite.sql",
        script_on_stdin: true,
        needs: &[("/usr/bin/sqlite3", "sqlite3")],
        driver: None,
    },
    Program {
        name: "redis",
        exe: "/bin/bash",
        args: &["{script}"],
        script: "redis.sh",
        script_on_stdin: false,
        needs: &[
            ("/usr/bin/redis-server", "redis-server"),
            ("/usr/bin/redis-benchmark", "redis-tools"),
            ("/usr/bin/redis-cli", "redis-tools"),
        ],
        driver: Some(("BENCH_PRELOAD", "server-peak-rss-kib:")),
    },
];

fn script_dir() -> PathBuf {
    benches_dir().join("real")
}

/// The jobs of the chosen programs (all by default), after installing what they need.
pub fn jobs(chosen: Option<&[String]>) -> Result<Vec<Job>> {
    let known: Vec<&str> = PROGRAMS.iter().map(|p| p.name).collect();
    crate::bench::check_names("real program", chosen, &known)?;
    let programs: Vec<&Program> = PROGRAMS
        .iter()
        .filter(|p| chosen.is_none_or(|c| c.iter().any(|x| x == p.name)))
        .collect();
    install_missing(&programs)?;
    Ok(programs
        .iter()
        .map(|p| {
            let script = script_dir().join(p.script);
            let args = p
                .args
                .iter()
                .map(|a| a.replace("{script}", &script.display().to_string()))
                .collect();
            let (preload_var, rss_key) = match p.driver {
                Some((var, key)) => (var, Some(key)),
                None => ("LD_PRELOAD", None),
            };
            Job {
                stdin: p.script_on_stdin.then_some(script),
                preload_var,
                rss_key,
                result_key: Some("ok"),
                ..Job::new(p.name, PathBuf::from(p.exe), args, script_dir())
            }
        })
        .collect())
}

/// Installs (apt-get, as root) the Debian packages of files the programs need that are
/// missing; nothing when all are there.
fn install_missing(programs: &[&Program]) -> Result {
    let needs: Vec<(&str, &str)> = programs.iter().flat_map(|p| p.needs).copied().collect();
    apt_install(&needs, "the real programs")
}

/// Installs (apt-get, as root) the Debian package of each `(file, package)` whose file is
/// missing; nothing when all are there. `who` names what needs them, for the messages.
pub fn apt_install(needs: &[(&str, &str)], who: &str) -> Result {
    let mut missing: Vec<&str> = Vec::new();
    for &(path, package) in needs {
        if !Path::new(path).exists() && !missing.contains(&package) {
            missing.push(package);
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let list = missing.join(" ");
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err(format!(
            "{who} need the Debian packages {list}: \
             `sudo apt-get install {list}`, or run the bench as root"
        ));
    }
    eprintln!("bench: installing {list} for {who}");
    let apt = |args: &[&str]| {
        crate::util::run(
            Command::new("apt-get")
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )
    };
    apt(&["update"])
        .and_then(|()| apt(&[&["install", "-y", "--no-install-recommends"], &missing[..]].concat()))
        .map_err(|e| format!("installing {list}: {e}"))?;
    match needs.iter().find(|(path, _)| !Path::new(path).exists()) {
        Some((path, package)) => Err(format!(
            "{path} is still missing after installing {package}"
        )),
        None => Ok(()),
    }
}

/// "lua: lua5.4 5.4.4-3+deb12u1, perl: perl 5.36.0-7+deb12u1, ...": the Debian package
/// and version of each job's program, for the report's header.
pub fn versions(jobs: &[Job]) -> String {
    let query = |args: &[&str]| {
        Command::new("dpkg-query")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    jobs.iter()
        .filter_map(|j| PROGRAMS.iter().find(|p| p.name == j.name))
        .map(|p| {
            let program = p.needs[0].0;
            let real = std::fs::canonicalize(program).unwrap_or_else(|_| program.into());
            // "ruby3.1: /usr/bin/ruby3.1", or "name:arch: path".
            let package = query(&["-S", &real.display().to_string()]).and_then(|l| {
                let owner = l.split(": ").next()?;
                Some(owner.split(':').next().unwrap_or(owner).to_string())
            });
            let version = package.map_or("(package unknown)".into(), |pkg| {
                let v = query(&["-W", "-f", "${Version}", &pkg]);
                format!("{pkg} {}", v.as_deref().unwrap_or("(version unknown)"))
            });
            format!("{}: {version}", p.name)
        })
        .collect::<Vec<_>>()
        .join(", ")
}
