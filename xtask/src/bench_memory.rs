//! `cargo xtask bench --memory`: how much memory each allocator holds, and when.
//!
//! The scenarios (`benches/memory/`, see `memory.h`) are programs that tell the runner on
//! stdout when they go idle (`idle: LABEL`, after their last free of a phase). They run through
//! `bench`'s runner (interleaved, checked, timed out alike); while one runs, a [`Watch`]
//! samples its resident set from `/proc` every [`SAMPLE_EVERY`] and reads its output, and the
//! "settled" resident set of each `idle:` line is the sample taken [`SETTLE`] after the runner
//! saw it. The report gives per scenario the peak RSS (`ru_maxrss`), each settled RSS, the
//! minor page faults, the kernel's CPU time and the wall time, and a chart of the resident
//! set over time (`memory.md`, `memory.svg` in `target/bench-report/`).

use crate::bench::{benches_dir, compile_c, median, Allocator, Job, Runs, Sample};
use crate::bench_report::{self, Cell, Row};
use crate::util::{root, Result};
use std::fmt::Write as _;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How often a running scenario's resident set is read.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(20);
/// How long after an `idle:` line its settled resident set is read (the scenario idles for
/// 2 s).
pub const SETTLE: Duration = Duration::from_millis(1500);

enum Source {
    /// `benches/memory/<name>.c`, run under each allocator's preload.
    C,
    /// The package `benches/memory/<name>/` of the `benches/` workspace: one binary per
    /// allocator, `<name>-<allocator>`, with it as `#[global_allocator]`.
    Rust,
    /// `benches/memory/<name>.sh`, run with bash; the allocator goes to the server it
    /// starts (`BENCH_PRELOAD`), as in `--real`.
    Script,
}

/// In report order.
const SCENARIOS: [(&str, Source); 9] = [
    ("idle-pool", Source::C),
    ("freeing-thread", Source::C),
    ("rebuilt-store", Source::C),
    ("size-drift", Source::C),
    ("bounded-store", Source::C),
    ("alternating-sizes", Source::C),
    ("phase-cycle", Source::C),
    ("phase-cycle-rust", Source::Rust),
    ("redis-flush", Source::Script),
];

pub fn scenario_dir() -> PathBuf {
    benches_dir().join("memory")
}

/// The names of the C scenarios (their sources are `scenario_dir()/<name>.c`).
pub fn c_scenarios() -> impl Iterator<Item = &'static str> {
    SCENARIOS
        .iter()
        .filter(|(_, source)| matches!(source, Source::C))
        .map(|(name, _)| *name)
}

/// The jobs of the chosen scenarios (all by default), built.
pub fn jobs(chosen: Option<&[String]>) -> Result<Vec<Job>> {
    let known: Vec<&str> = SCENARIOS.iter().map(|(name, _)| *name).collect();
    crate::bench::check_names("memory scenario", chosen, &known)?;
    let mut jobs = Vec::new();
    for (name, source) in &SCENARIOS {
        if chosen.is_some_and(|c| !c.iter().any(|x| x == name)) {
            continue;
        }
        let (exe, args, linked, preload_var) = match source {
            Source::C => {
                let exe = benches_dir().join("target/c/memory").join(name);
                compile_c(&scenario_dir().join(format!("{name}.c")), &exe)?;
                (exe, Vec::new(), false, "LD_PRELOAD")
            }
            Source::Rust => {
                let exe = crate::bench::build_benches_package(name)?.join(name);
                (exe, Vec::new(), true, "LD_PRELOAD")
            }
            Source::Script => {
                crate::bench_real::apt_install(
                    &[
                        ("/usr/bin/redis-server", "redis-server"),
                        ("/usr/bin/redis-benchmark", "redis-tools"),
                    ],
                    "the redis-flush scenario",
                )?;
                let script = scenario_dir().join(format!("{name}.sh"));
                let args = vec![script.to_string_lossy().into_owned()];
                (PathBuf::from("/bin/bash"), args, false, "BENCH_PRELOAD")
            }
        };
        jobs.push(Job {
            result_key: Some("ok"),
            linked,
            rss_curve: true,
            preload_var,
            ..Job::new(name, exe, args, root())
        });
    }
    Ok(jobs)
}

/// One `idle:` line of a run and the resident set read [`SETTLE`] after it.
pub struct Settled {
    pub label: String,
    /// When the sample was taken (seconds since the start).
    pub at: f64,
    pub kib: u64,
}

/// The resident set over one run.
pub struct Curve {
    /// (seconds since the start, KiB), one every [`SAMPLE_EVERY`].
    pub points: Vec<(f64, u64)>,
    /// In the order of the `idle:` lines.
    pub settled: Vec<Settled>,
}

/// An `idle:` line: its label, when the runner saw it, and its settled sample (seconds, KiB)
/// once taken.
struct Idle {
    label: String,
    seen: f64,
    settled: Option<(f64, u64)>,
}

/// Follows a running scenario: its resident set, and its output for `idle:` lines.
pub struct Watch {
    pid: u32,
    start: Instant,
    /// The run's log, read as the program writes it; `partial` is its last, unfinished line.
    output: Option<File>,
    partial: String,
    points: Vec<(f64, u64)>,
    idles: Vec<Idle>,
    /// The first line that followed an `idle:` line before its settled sample was taken.
    missed: Option<String>,
}

impl Watch {
    pub fn new(pid: libc::pid_t, log: &Path, start: Instant) -> Watch {
        Watch {
            pid: pid as u32,
            start,
            output: File::open(log).ok(),
            partial: String::new(),
            points: Vec::new(),
            idles: Vec::new(),
            missed: None,
        }
    }

    /// Reads what the program printed since the last call.
    fn read_output(&mut self, now: f64) {
        let mut bytes = Vec::new();
        if let Some(f) = &mut self.output {
            let _ = f.read_to_end(&mut bytes);
        }
        self.partial.push_str(&String::from_utf8_lossy(&bytes));
        while let Some(end) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=end).collect();
            let line = line.trim_end();
            if let Some(Idle { label, .. }) = self.idles.iter().find(|i| i.settled.is_none()) {
                self.missed.get_or_insert(format!(
                    "FAIL (no settled sample of {label}: the program went on ({line:?}) first)"
                ));
            }
            if let Some(label) = line.strip_prefix("idle:") {
                self.idles.push(Idle {
                    label: label.trim().to_string(),
                    seen: now,
                    settled: None,
                });
            }
        }
    }

    /// One sample: called every [`SAMPLE_EVERY`] while the program runs.
    pub fn sample(&mut self) {
        let now = self.start.elapsed().as_secs_f64();
        self.read_output(now);
        let Some(kib) = rss_kib(self.pid) else {
            return; // it has just ended
        };
        self.points.push((now, kib));
        for idle in &mut self.idles {
            if idle.settled.is_none() && now - idle.seen >= SETTLE.as_secs_f64() {
                idle.settled = Some((now, kib));
            }
        }
    }

    /// The curve, once the program has ended; an error when an `idle:` line got no settled
    /// sample.
    pub fn finish(mut self) -> std::result::Result<Curve, String> {
        self.read_output(self.start.elapsed().as_secs_f64());
        if let Some(e) = self.missed {
            return Err(e);
        }
        let settled = self
            .idles
            .into_iter()
            .map(|Idle { label, settled, .. }| match settled {
                Some((at, kib)) => Ok(Settled { label, at, kib }),
                None => Err(format!(
                    "FAIL (it ended before the settled sample of {label})"
                )),
            })
            .collect::<std::result::Result<_, _>>()?;
        Ok(Curve {
            points: self.points,
            settled,
        })
    }
}

/// The resident set of a process and of its descendants, KiB (`VmRSS`); None once it has
/// ended.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let own: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(own + children(pid).into_iter().filter_map(rss_kib).sum::<u64>())
}

/// The children of a process: those of each of its threads (`/proc/PID/task/TID/children`).
fn children(pid: u32) -> Vec<u32> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten();
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// A cell of one number: `cost` is what the report's ratios compare (see `ratio_table`).
fn value_cell(v: f64) -> Cell {
    Cell::Ok {
        wall: v,
        cost: v,
        rss_kib: v,
        throughput: None,
    }
}

/// The run whose wall time is the median (of two, the slower).
fn median_run(samples: &[Sample]) -> Option<&Sample> {
    let mut by_time: Vec<&Sample> = samples.iter().collect();
    by_time.sort_by(|a, b| a.wall.total_cmp(&b.wall));
    by_time.get(by_time.len() / 2).copied()
}

/// The settled labels of a job, in order, as its first run that has them printed them.
fn labels(runs: &Runs, j: usize) -> Vec<String> {
    runs.samples[j]
        .iter()
        .flatten()
        .find_map(|s| s.curve.as_ref())
        .map_or(Vec::new(), |c| {
            c.settled.iter().map(|s| s.label.clone()).collect()
        })
}

/// The report: markdown tables, and the chart (None when nothing ran).
pub fn report(
    jobs: &[Job],
    allocs: &[Allocator],
    runs: &Runs,
    mode: &str,
) -> (String, Option<String>) {
    let names: Vec<String> = allocs.iter().map(|a| a.name.clone()).collect();
    let layout = &bench_report::MEMORY;
    // Rows of one measure: per job (or per job and settled label), the median of `measure`
    // over its runs.
    let rows = |measure: &dyn Fn(&Sample, Option<&str>) -> Option<f64>, per_label: bool| {
        let mut rows = Vec::new();
        for (j, job) in jobs.iter().enumerate() {
            let labels = if per_label {
                labels(runs, j).into_iter().map(Some).collect()
            } else {
                vec![None]
            };
            for label in labels {
                let cells = (0..allocs.len())
                    .map(|a| {
                        runs.cell(allocs, j, a, |s| {
                            let v: Vec<f64> = s
                                .iter()
                                .filter_map(|x| measure(x, label.as_deref()))
                                .collect();
                            if v.is_empty() {
                                Cell::Failed("FAIL (no value)".into(), PathBuf::from("(no log)"))
                            } else {
                                value_cell(median(v))
                            }
                        })
                    })
                    .collect();
                rows.push(Row {
                    workload: match &label {
                        Some(l) => format!("{} · {l}", job.name),
                        None => job.name.clone(),
                    },
                    threads: None,
                    fixed_time: false,
                    cells,
                });
            }
        }
        rows
    };
    let mib = |c: &Cell| match c {
        Cell::Ok { cost, .. } => Some(format!("{:.1}", cost / 1024.0)),
        _ => None,
    };
    let peak = rows(&|s, _| Some(s.rss_kib as f64), false);
    let settled = rows(
        &|s, label| {
            let c = s.curve.as_ref()?;
            let hit = c.settled.iter().find(|x| Some(x.label.as_str()) == label)?;
            Some(hit.kib as f64)
        },
        true,
    );
    let faults = rows(&|s, _| Some(s.minor_faults as f64), false);
    let system = rows(&|s, _| Some(s.system), false);
    let wall = rows(&|s, _| Some(s.wall), false);

    let ratio_to = bench_report::ratio_names(layout.rss);
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# {}\n\n{}- mode: {mode}\n\nEvery cell: the median over the runs, then in brackets \
         its ratio {ratio_to} (the lowest of glibc, mimalloc, jemalloc and tcmalloc in that row; lower is \
         better); under each table the geometric mean and the highest of each ratio.\n",
        layout.title,
        bench_report::machine()
    );
    type Value = fn(&Cell) -> Option<String>;
    let tables: [(&str, &str, &[Row], Value); 5] = [
        (
            "Peak RSS",
            "The peak resident set (`ru_maxrss`), MiB.",
            &peak,
            mib,
        ),
        (
            "Settled RSS",
            "The resident set 1.5 s after the scenario went idle (`idle: LABEL`, printed after \
             its last free of that phase; it then allocates nothing for 2 s), MiB.",
            &settled,
            mib,
        ),
        (
            "Minor page faults",
            "Pages the kernel mapped in (`ru_minflt`); each new anonymous page is zeroed first.",
            &faults,
            |c| match c {
                Cell::Ok { cost, .. } => Some(bench_report::si(*cost)),
                _ => None,
            },
        ),
        (
            "Kernel time",
            "CPU time in the kernel (`ru_stime`, all threads), seconds: page faults, \
             `mmap`, `munmap`, `madvise`.",
            &system,
            |c| match c {
                Cell::Ok { cost, .. } => Some(format!("{cost:.2}")),
                _ => None,
            },
        ),
        (
            "Wall time",
            "Seconds, the scenario's idle pauses (2 s each) included.",
            &wall,
            |c| match c {
                Cell::Ok { cost, .. } => Some(format!("{cost:.2}")),
                _ => None,
            },
        ),
    ];
    for (title, what, rows, value) in tables {
        let _ = writeln!(md, "## {title}\n\n{what}\n");
        bench_report::ratio_table(&mut md, &names, rows, layout.rss, |x| x.0, value);
        md.push('\n');
    }
    md.push_str(&bench_report::failures(&names, &peak));

    let panels: Vec<Panel> = jobs
        .iter()
        .enumerate()
        .map(|(j, job)| Panel {
            title: job.name.clone(),
            lines: (0..allocs.len())
                .map(|a| {
                    let curve = median_run(&runs.samples[j][a]).and_then(|s| s.curve.as_ref());
                    match (curve, &peak[j].cells[a]) {
                        (Some(c), _) => Ok(c),
                        (None, cell) => Err(match cell {
                            Cell::Failed(e, _) => e.clone(),
                            Cell::Absent(_) => "ABSENT".into(),
                            Cell::Ok { .. } => "no curve".into(),
                        }),
                    }
                })
                .collect(),
        })
        .collect();
    let svg = (!panels.is_empty()).then(|| chart(&names, &panels));
    (md, svg)
}

/// One scenario's curves: per allocator, that of its median run or why there is none.
struct Panel<'a> {
    title: String,
    lines: Vec<std::result::Result<&'a Curve, String>>,
}

/// A step for about `ticks` ticks from 0 to `max`: 1, 2 or 5 × a power of ten.
fn tick_step(max: f64, ticks: f64) -> f64 {
    let raw = (max / ticks).max(1e-9);
    let power = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * power)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * power)
}

/// Small multiples: one panel per scenario (two per row), the resident set (MiB) over time
/// (seconds) with a line per allocator, a dot on each settled sample.
fn chart(allocs: &[String], panels: &[Panel]) -> String {
    let (pw, ph, gap_x, gap_y, top, left) = (460.0, 210.0, 30.0, 40.0, 64.0, 10.0);
    let cols = 2usize;
    let rows = panels.len().div_ceil(cols);
    let width = left + cols as f64 * (pw + gap_x);
    let height = top + rows as f64 * (ph + gap_y);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{left}" y="20" font-size="14" font-weight="bold">Resident set (MiB) over time (s), the median run of each; dots: settled samples (1.5 s into an idle pause)</text>"#
    );
    for (i, name) in allocs.iter().enumerate() {
        let lx = left + 40.0 + i as f64 * 130.0;
        let _ = writeln!(
            s,
            r#"<rect x="{lx}" y="33" width="18" height="4" fill="{}"/><text x="{}" y="39">{}</text>"#,
            bench_report::color(name),
            lx + 24.0,
            bench_report::esc(name)
        );
    }
    for (k, panel) in panels.iter().enumerate() {
        let x0 = left + (k % cols) as f64 * (pw + gap_x);
        let y0 = top + (k / cols) as f64 * (ph + gap_y);
        // The plot area inside the panel, leaving room for the title and the axes' labels.
        let (px0, px1, py0, py1) = (x0 + 48.0, x0 + pw, y0 + 18.0, y0 + ph - 18.0);
        let curves = panel.lines.iter().filter_map(|l| l.as_ref().ok());
        let (t_max, mib_max) = curves
            .flat_map(|c| c.points.iter())
            .fold((1.0f64, 1.0f64), |(t, m), &(x, kib)| {
                (t.max(x), m.max(kib as f64 / 1024.0))
            });
        let (t_step, mib_step) = (tick_step(t_max, 6.0), tick_step(mib_max, 4.0));
        let (t_top, mib_top) = (
            (t_max / t_step).ceil() * t_step,
            (mib_max / mib_step).ceil() * mib_step,
        );
        let x = |t: f64| px0 + t / t_top * (px1 - px0);
        let y = |mib: f64| py1 - mib / mib_top * (py1 - py0);
        let _ = writeln!(
            s,
            r#"<text x="{px0}" y="{}" font-weight="bold">{}</text>"#,
            y0 + 10.0,
            bench_report::esc(&panel.title)
        );
        let _ = writeln!(
            s,
            r##"<rect x="{px0}" y="{py0}" width="{}" height="{}" fill="none" stroke="#999"/>"##,
            px1 - px0,
            py1 - py0
        );
        let mut v = 0.0;
        while v <= mib_top + 1e-9 {
            let _ = writeln!(
                s,
                r##"<line x1="{px0}" y1="{0}" x2="{px1}" y2="{0}" stroke="#eee"/><text x="{1}" y="{2}" text-anchor="end">{v}</text>"##,
                y(v),
                px0 - 4.0,
                y(v) + 4.0
            );
            v += mib_step;
        }
        let mut t = 0.0;
        while t <= t_top + 1e-9 {
            let _ = writeln!(
                s,
                r#"<text x="{}" y="{}" text-anchor="middle">{t}</text>"#,
                x(t),
                py1 + 13.0
            );
            t += t_step;
        }
        let mut notes = 0;
        for (a, line) in panel.lines.iter().enumerate() {
            let colour = bench_report::color(&allocs[a]);
            match line {
                Ok(c) => {
                    let points: Vec<String> = c
                        .points
                        .iter()
                        .map(|&(t, kib)| format!("{:.1},{:.1}", x(t), y(kib as f64 / 1024.0)))
                        .collect();
                    let _ = writeln!(
                        s,
                        r#"<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{}"/>"#,
                        points.join(" ")
                    );
                    for p in &c.settled {
                        let _ = writeln!(
                            s,
                            r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{colour}"/>"#,
                            x(p.at),
                            y(p.kib as f64 / 1024.0)
                        );
                    }
                }
                Err(why) => {
                    notes += 1;
                    let _ = writeln!(
                        s,
                        r##"<text x="{}" y="{}" fill="#d00">{}: {}</text>"##,
                        px0 + 6.0,
                        py0 + 12.0 * notes as f64,
                        bench_report::esc(&allocs[a]),
                        bench_report::esc(why)
                    );
                }
            }
        }
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn tick_steps_are_one_two_or_five_times_a_power_of_ten() {
        assert_eq!(tick_step(7.3, 6.0), 2.0);
        assert_eq!(tick_step(830.0, 4.0), 500.0);
        assert_eq!(tick_step(96.0, 4.0), 50.0);
        assert_eq!(tick_step(0.4, 4.0), 0.1);
    }

    /// A watch over this process, fed a log by hand.
    fn watch(log: &Path) -> (Watch, File) {
        let out = File::create(log).unwrap();
        let w = Watch::new(std::process::id() as libc::pid_t, log, Instant::now());
        (w, out)
    }

    #[test]
    fn the_settled_sample_is_taken_a_settle_delay_after_the_idle_line() {
        let log = std::env::temp_dir().join(format!("xtask-watch-{}.log", std::process::id()));
        let (mut w, mut out) = watch(&log);
        w.sample();
        writeln!(out, "phase: build\nidle: first").unwrap();
        w.sample(); // sees the line
        let seen = w.idles[0].seen;
        while w.start.elapsed().as_secs_f64() < seen + SETTLE.as_secs_f64() - 0.3 {
            std::thread::sleep(SAMPLE_EVERY);
            w.sample();
        }
        assert!(w.idles[0].settled.is_none(), "settled too early");
        while w.idles[0].settled.is_none() {
            std::thread::sleep(SAMPLE_EVERY);
            w.sample();
        }
        writeln!(out, "ok 1").unwrap();
        let curve = w.finish().unwrap();
        let _ = std::fs::remove_file(&log);
        assert_eq!(curve.settled.len(), 1);
        let s = &curve.settled[0];
        assert_eq!(s.label, "first");
        assert!(s.at >= seen + SETTLE.as_secs_f64(), "{} {seen}", s.at);
        assert!(s.kib > 0 && curve.points.len() > 10);
    }

    #[test]
    fn an_idle_line_without_its_settled_sample_fails_the_run() {
        let log = std::env::temp_dir().join(format!("xtask-watch-miss-{}.log", std::process::id()));
        let (mut w, mut out) = watch(&log);
        writeln!(out, "idle: early").unwrap();
        w.sample();
        writeln!(out, "phase: next").unwrap();
        w.sample();
        let e = w.finish().err().unwrap();
        assert!(e.contains("no settled sample of early"), "{e}");
        let (mut w, mut out) = watch(&log);
        writeln!(out, "idle: last").unwrap();
        w.sample();
        let e = w.finish().err().unwrap();
        let _ = std::fs::remove_file(&log);
        assert!(e.contains("ended before the settled sample of last"), "{e}");
    }
}
