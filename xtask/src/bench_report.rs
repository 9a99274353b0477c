//! The report of `cargo xtask bench`: markdown tables and a hand-written SVG chart.
//!
//! A [`Layout`] says which allocators the ratios are taken against: the suite compares with
//! glibc and mimalloc, the real programs (`--real`) with mimalloc, jemalloc and, per row, the
//! better of the two, the memory scenarios (`--memory`, whose report is `bench_memory`'s) with
//! the best of the three peers.

use std::fmt::Write;
use std::path::PathBuf;
use std::process::Command;

/// The medians of one workload under one allocator, or why there are none.
pub enum Cell {
    Absent(String),
    Failed(String, PathBuf),
    Ok {
        wall: f64,
        cost: f64,
        rss_kib: f64,
        throughput: Option<f64>,
    },
}

impl Cell {
    fn ok(&self) -> Option<(f64, f64)> {
        match self {
            Cell::Ok { cost, rss_kib, .. } => Some((*cost, *rss_kib)),
            _ => None,
        }
    }
    /// What a failed cell shows instead of a number.
    fn failure(&self) -> Option<String> {
        match self {
            Cell::Absent(_) => Some("ABSENT".into()),
            Cell::Failed(e, _) => Some(e.clone()),
            Cell::Ok { .. } => None,
        }
    }
}

pub struct Row {
    pub workload: String,
    /// The thread count, for workloads that take one.
    pub threads: Option<usize>,
    /// The program runs for a fixed time: its ratios come from its own throughput.
    pub fixed_time: bool,
    pub cells: Vec<Cell>,
}

/// Date, machine and commit, for the report's header.
pub fn machine() -> String {
    let sh = |cmd: &str, args: &[&str]| {
        Command::new(cmd)
            .args(args)
            .current_dir(crate::util::root())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|| "unknown".into())
    };
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let dirty = sh("git", &["status", "--porcelain", "--untracked-files=no"]);
    format!(
        "- date: {}\n- machine: {} cores (nproc), {cpu}, Linux {}\n- commit: {}{}\n",
        sh("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        sh("uname", &["-r"]),
        sh("git", &["rev-parse", "--short", "HEAD"]),
        if dirty.is_empty() || dirty == "unknown" {
            ""
        } else {
            " (with uncommitted changes)"
        }
    )
}

/// What ratios are taken against: the lowest value among these allocators' cells in the
/// same row (one allocator, or the better of several).
pub struct Reference {
    /// How the report names it: "glibc", "the better of mimalloc and jemalloc".
    pub label: &'static str,
    pub allocators: &'static [&'static str],
}

/// A report's title, the references of its time and RSS ratios, and where it is written
/// (file names in `target/bench-report/`).
pub struct Layout {
    pub title: &'static str,
    pub time: &'static [Reference],
    pub rss: &'static [Reference],
    pub report: &'static str,
    pub chart: &'static str,
    /// The directory of the runs' outputs.
    pub logs: &'static str,
}

const GLIBC: Reference = Reference {
    label: "glibc",
    allocators: &["glibc"],
};
const MIMALLOC: Reference = Reference {
    label: "mimalloc",
    allocators: &["mimalloc"],
};
const JEMALLOC: Reference = Reference {
    label: "jemalloc",
    allocators: &["jemalloc"],
};
const BETTER_PEER: Reference = Reference {
    label: "the better of mimalloc and jemalloc",
    allocators: &["mimalloc", "jemalloc"],
};
pub const BEST_PEER: Reference = Reference {
    label: "the best peer",
    allocators: &["glibc", "mimalloc", "jemalloc", "tcmalloc"],
};

/// The suite of C workloads (and `--external`).
pub const SUITE: Layout = Layout {
    title: "hakmem benchmark report",
    time: &[GLIBC, MIMALLOC],
    rss: &[MIMALLOC],
    report: "report.md",
    chart: "chart.svg",
    logs: "logs",
};

/// The real programs (`--real`).
pub const REAL: Layout = Layout {
    title: "hakmem real-program benchmark report",
    time: &[MIMALLOC, JEMALLOC, BETTER_PEER],
    rss: &[MIMALLOC, JEMALLOC, BETTER_PEER],
    report: "real.md",
    chart: "real.svg",
    logs: "logs/real",
};

/// The memory scenarios (`--memory`).
pub const MEMORY: Layout = Layout {
    title: "hakmem memory benchmark report",
    time: &[BEST_PEER],
    rss: &[BEST_PEER],
    report: "memory.md",
    chart: "memory.svg",
    logs: "logs/memory",
};

/// A [`Reference`] as positions in the report's allocator list (those that took part).
type Base = Vec<usize>;

fn resolve(allocs: &[String], r: &Reference) -> Base {
    (0..allocs.len())
        .filter(|&a| r.allocators.contains(&allocs[a].as_str()))
        .collect()
}

/// `a / base` of a row's values, when both have one.
fn ratio(row: &Row, a: usize, base: &[usize], pick: fn((f64, f64)) -> f64) -> Option<f64> {
    let x = pick(row.cells[a].ok()?);
    let y = base
        .iter()
        .filter_map(|&b| row.cells[b].ok().map(pick))
        .min_by(|p, q| p.total_cmp(q))?;
    Some(x / y)
}

fn geomean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| (v.iter().map(|x| x.ln()).sum::<f64>() / v.len() as f64).exp())
}

/// 28.4M, 1.21k, 733: three significant digits at most.
pub fn si(x: f64) -> String {
    let (v, unit) = if x >= 1e6 {
        (x / 1e6, "M")
    } else if x >= 1e3 {
        (x / 1e3, "k")
    } else {
        (x, "")
    };
    let digits = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    format!("{v:.digits$}{unit}")
}

fn opt(r: Option<f64>) -> String {
    r.map_or("–".into(), |r| format!("{r:.2}"))
}

/// Whether the table has a threads column: the rows have thread counts.
fn has_threads(rows: &[Row]) -> bool {
    rows.iter().any(|r| r.threads.is_some())
}

/// "2", or nothing for a program that takes no thread count.
fn threads_text(threads: Option<usize>) -> String {
    threads.map_or(String::new(), |t| t.to_string())
}

/// The table's first columns: the name, and the threads column's text if the table has one.
fn lead(rows: &[Row], name: &str, threads: &str) -> String {
    if has_threads(rows) {
        format!("| {name} | {threads} |")
    } else {
        format!("| {name} |")
    }
}

fn header(out: &mut String, allocs: &[String], rows: &[Row]) {
    let (names, rule) = if has_threads(rows) {
        ("| workload | threads |", "|---|---:|")
    } else {
        ("| workload |", "|---|")
    };
    let _ = writeln!(out, "{names} {} |", allocs.join(" | "));
    let _ = writeln!(out, "{rule}{}", "---:|".repeat(allocs.len()));
}

fn row_label(r: &Row) -> String {
    format!("{}{}", r.workload, if r.fixed_time { " †" } else { "" })
}

/// "churn with 2 thread(s)", "lua".
fn row_name(r: &Row) -> String {
    match r.threads {
        Some(t) => format!("{} with {t} thread(s)", r.workload),
        None => r.workload.clone(),
    }
}

/// The rows summaries are taken over, with the label of their threads column: those of each
/// thread count when there are several, then all rows ("all").
fn mean_groups(rows: &[Row]) -> Vec<(String, Vec<&Row>)> {
    let mut counts: Vec<Option<usize>> = rows.iter().map(|r| r.threads).collect();
    counts.sort_unstable();
    counts.dedup();
    let mut groups = Vec::new();
    if counts.len() > 1 {
        for t in counts {
            groups.push((
                threads_text(t),
                rows.iter().filter(|r| r.threads == t).collect(),
            ));
        }
    }
    groups.push(("all".to_string(), rows.iter().collect()));
    groups
}

/// The ratios of every row (where both sides have a value) of one allocator to one base.
fn ratios(rows: &[&Row], a: usize, base: &[usize], pick: fn((f64, f64)) -> f64) -> Vec<f64> {
    rows.iter()
        .filter_map(|r| ratio(r, a, base, pick))
        .collect()
}

/// A table of one measure: per row and allocator its median (`value`), then in brackets its
/// ratio to each reference; then the geometric means of the ratios (see `mean_groups`) and
/// the highest ratio over all rows.
pub fn ratio_table(
    s: &mut String,
    allocs: &[String],
    rows: &[Row],
    refs: &[Reference],
    pick: fn((f64, f64)) -> f64,
    value: fn(&Cell) -> Option<String>,
) {
    let bases: Vec<Base> = refs.iter().map(|r| resolve(allocs, r)).collect();
    header(s, allocs, rows);
    let bracket = |v: Vec<String>| format!("({})", v.join(" · "));
    for r in rows {
        let cells: Vec<String> = (0..allocs.len())
            .map(|a| match value(&r.cells[a]) {
                Some(v) => {
                    let rs = bases.iter().map(|b| opt(ratio(r, a, b, pick))).collect();
                    format!("{v} {}", bracket(rs))
                }
                None => r.cells[a].failure().unwrap_or_default(),
            })
            .collect();
        let _ = writeln!(
            s,
            "{} {} |",
            lead(rows, &row_label(r), &threads_text(r.threads)),
            cells.join(" | ")
        );
    }
    // Per allocator, the reduced ratios to each base over a group of rows.
    let summary = |group: &[&Row], reduce: fn(&[f64]) -> Option<f64>| -> Vec<String> {
        let n = group.len();
        (0..allocs.len())
            .map(|a| {
                let per_base: Vec<Vec<f64>> =
                    bases.iter().map(|b| ratios(group, a, b, pick)).collect();
                let counts: Vec<usize> = per_base.iter().map(Vec::len).collect();
                let count = if counts.iter().all(|&c| c == n) {
                    String::new()
                } else {
                    let c: Vec<String> = counts.iter().map(|c| c.to_string()).collect();
                    format!(" [{} of {n} rows]", c.join("·"))
                };
                let v = per_base.iter().map(|v| opt(reduce(v))).collect();
                format!("{}{count}", bracket(v))
            })
            .collect()
    };
    let highest = |v: &[f64]| v.iter().copied().max_by(|p, q| p.total_cmp(q));
    let groups = mean_groups(rows);
    let all = &groups[groups.len() - 1..]; // the group of all rows, last of `mean_groups`
    for (name, reduce, groups) in [
        (
            "**geometric mean**",
            geomean as fn(&[f64]) -> Option<f64>,
            &groups[..],
        ),
        ("**highest**", highest, all),
    ] {
        for (threads, group) in groups {
            let _ = writeln!(
                s,
                "{} {} |",
                lead(rows, name, threads),
                summary(group, reduce).join(" | ")
            );
        }
    }
}

/// "to glibc · to mimalloc"
pub fn ratio_names(refs: &[Reference]) -> String {
    refs.iter()
        .map(|r| format!("to {}", r.label))
        .collect::<Vec<_>>()
        .join(" · ")
}

pub fn markdown(
    layout: &Layout,
    allocs: &[String],
    rows: &[Row],
    mode: &str,
    machine: &str,
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# {}\n\n{machine}- mode: {mode}\n", layout.title);

    let _ = writeln!(
        s,
        "## Time\n\nMedian wall time in seconds, then in brackets the ratio {} (lower is \
         better); under the rows the geometric mean of each ratio{} and its highest value.{}\n",
        ratio_names(layout.time),
        if mean_groups(rows).len() > 1 {
            " (per thread count, then over all rows)"
        } else {
            ""
        },
        if rows.iter().any(|r| r.fixed_time) {
            " † runs for a fixed time: its ratios compare the inverse of the throughput it \
             reports."
        } else {
            ""
        }
    );
    ratio_table(
        &mut s,
        allocs,
        rows,
        layout.time,
        |x| x.0,
        |c| match c {
            Cell::Ok { wall, .. } => Some(format!("{wall:.3}")),
            _ => None,
        },
    );

    let _ = writeln!(
        s,
        "\n## Peak RSS\n\nMedian peak resident set in MiB, then in brackets the ratio {} \
         (lower is better).\n",
        ratio_names(layout.rss)
    );
    ratio_table(
        &mut s,
        allocs,
        rows,
        layout.rss,
        |x| x.1,
        |c| match c {
            Cell::Ok { rss_kib, .. } => Some(format!("{:.1}", rss_kib / 1024.0)),
            _ => None,
        },
    );

    if rows.iter().any(|r| {
        r.cells.iter().any(|c| {
            matches!(
                c,
                Cell::Ok {
                    throughput: Some(_),
                    ..
                }
            )
        })
    }) {
        let _ = writeln!(s, "\n## Throughput\n\nAs the workload reports it, median, in operations (malloc-family calls and frees) per second (higher is better; k = 10^3, M = 10^6).\n");
        header(&mut s, allocs, rows);
        for r in rows {
            let cells: Vec<String> = r
                .cells
                .iter()
                .map(|c| match c {
                    Cell::Ok {
                        throughput: Some(t),
                        ..
                    } => si(*t),
                    Cell::Ok { .. } => "–".into(),
                    c => c.failure().unwrap(),
                })
                .collect();
            let _ = writeln!(
                s,
                "{} {} |",
                lead(rows, &row_label(r), &threads_text(r.threads)),
                cells.join(" | ")
            );
        }
    }

    s.push_str(&failures(allocs, rows));
    s
}

/// The "Failures" section: each absent allocator and failed cell with the end of its log;
/// nothing when all ran.
pub fn failures(allocs: &[String], rows: &[Row]) -> String {
    let mut problems = String::new();
    for (a, name) in allocs.iter().enumerate() {
        if let Some(Cell::Absent(why)) = rows.first().map(|r| &r.cells[a]) {
            let _ = writeln!(problems, "- {name}: ABSENT, {why}");
        }
        for r in rows {
            if let Cell::Failed(e, log) = &r.cells[a] {
                let tail: Vec<String> = std::fs::read_to_string(log)
                    .unwrap_or_default()
                    .lines()
                    .rev()
                    .take(3)
                    .map(|l| l.chars().take(160).collect())
                    .collect();
                let tail: Vec<String> = tail.into_iter().rev().collect();
                let _ = writeln!(
                    problems,
                    "- {name}, {}: {e}; last output: `{}` ({})",
                    row_name(r),
                    tail.join(" / ").replace('`', "'"),
                    log.display()
                );
            }
        }
    }
    if problems.is_empty() {
        return problems;
    }
    format!("\n## Failures\n\n{problems}\n")
}

pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

pub fn color(name: &str) -> &'static str {
    match name {
        "hakmem" => "#d62728",
        "hakmem-base" => "#ff9896",
        "hakmem-checked" => "#9467bd",
        "glibc" => "#7f7f7f",
        "jemalloc" => "#1f77b4",
        "tcmalloc" => "#ff7f0e",
        _ => "#2ca02c",
    }
}

/// Horizontal bars of each allocator's time ratio to mimalloc per workload, on a log scale
/// from 1/4 to 4 (bars beyond are cut, their label gives the value). None without mimalloc.
pub fn svg(allocs: &[String], rows: &[Row]) -> Option<String> {
    let mi = allocs.iter().position(|a| a == "mimalloc")?;
    let shown: Vec<usize> = (0..allocs.len()).filter(|&a| a != mi).collect();
    // One group per row, then the geometric means: per allocator a ratio, or why there is none.
    let mut groups: Vec<(String, Vec<std::result::Result<f64, String>>)> = rows
        .iter()
        .map(|r| {
            let bars = shown
                .iter()
                .map(|&a| match ratio(r, a, &[mi], |x| x.0) {
                    Some(q) => Ok(q),
                    None => Err(r.cells[a]
                        .failure()
                        .or(r.cells[mi].failure().map(|f| format!("mimalloc {f}")))
                        .unwrap_or_default()),
                })
                .collect();
            let name = match r.threads {
                Some(t) => format!("{} · {t}t", row_label(r)),
                None => row_label(r),
            };
            (name, bars)
        })
        .collect();
    for (threads, group) in mean_groups(rows) {
        let geo = shown
            .iter()
            .map(|&a| geomean(&ratios(&group, a, &[mi], |x| x.0)).ok_or_else(String::new))
            .collect();
        let label = match threads.as_str() {
            "all" => "geometric mean".to_string(),
            t => format!("geometric mean · {t}t"),
        };
        groups.push((label, geo));
    }
    let (label, plot, bar, gap, top) = (200.0, 560.0, 12.0, 10.0, 70.0);
    let group = shown.len() as f64 * bar + gap;
    let (width, height) = (
        label + plot + 110.0,
        top + groups.len() as f64 * group + 30.0,
    );
    let x = |r: f64| label + (r.log2().clamp(-2.0, 2.0) + 2.0) / 4.0 * plot;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="10" y="20" font-size="14" font-weight="bold">Wall time relative to mimalloc (log scale; left of 1 is faster)</text>"#
    );
    for (i, &a) in shown.iter().enumerate() {
        let lx = label + i as f64 * 110.0;
        let _ = writeln!(
            s,
            r#"<rect x="{lx}" y="32" width="12" height="10" fill="{}"/>"#,
            color(&allocs[a])
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="41">{}</text>"#,
            lx + 16.0,
            esc(&allocs[a])
        );
    }
    // Every other workload's rows on a grey band, so that a workload's thread counts read as one.
    let mut shaded = false;
    for (k, r) in rows.iter().enumerate() {
        if k > 0 && rows[k - 1].workload != r.workload {
            shaded = !shaded;
        }
        if shaded {
            let _ = writeln!(
                s,
                r##"<rect x="0" y="{}" width="{width}" height="{group}" fill="#f2f2f2"/>"##,
                top + k as f64 * group - gap / 2.0
            );
        }
    }
    for t in [0.25, 0.5, 1.0, 2.0, 4.0] {
        let (tx, stroke) = (x(t), if t == 1.0 { "#000" } else { "#ddd" });
        let _ = writeln!(
            s,
            r#"<line x1="{tx}" y1="{}" x2="{tx}" y2="{}" stroke="{stroke}"/>"#,
            top - 8.0,
            height - 25.0
        );
        let _ = writeln!(
            s,
            r#"<text x="{tx}" y="{}" text-anchor="middle">{t}</text>"#,
            height - 12.0
        );
    }
    for (k, (name, bars)) in groups.iter().enumerate() {
        let y0 = top + k as f64 * group;
        let weight = if k >= rows.len() { "bold" } else { "normal" };
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end" font-weight="{weight}">{}</text>"#,
            label - 8.0,
            y0 + shown.len() as f64 * bar / 2.0 + 4.0,
            esc(name)
        );
        for (i, (&a, q)) in shown.iter().zip(bars).enumerate() {
            let y = y0 + i as f64 * bar;
            let text_y = y + bar - 3.0;
            match q {
                Ok(q) => {
                    let (x1, xq) = (x(1.0), x(*q));
                    let _ = writeln!(
                        s,
                        r#"<rect x="{}" y="{y}" width="{}" height="{}" fill="{}"/>"#,
                        x1.min(xq),
                        (xq - x1).abs().max(1.0),
                        bar - 2.0,
                        color(&allocs[a])
                    );
                    let _ = writeln!(
                        s,
                        r#"<text x="{}" y="{text_y}" font-size="9">{q:.2}</text>"#,
                        x1.max(xq) + 3.0
                    );
                }
                Err(f) if !f.is_empty() => {
                    let _ = writeln!(
                        s,
                        r##"<text x="{}" y="{text_y}" font-size="9" fill="#d00">{} {}</text>"##,
                        x(1.0) + 3.0,
                        esc(&allocs[a]),
                        esc(f)
                    );
                }
                Err(_) => {}
            }
        }
    }
    s.push_str("</svg>\n");
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(wall: f64, rss_mib: f64) -> Cell {
        Cell::Ok {
            wall,
            cost: wall,
            rss_kib: rss_mib * 1024.0,
            throughput: None,
        }
    }

    fn names() -> Vec<String> {
        ["hakmem", "mimalloc", "jemalloc"]
            .map(String::from)
            .to_vec()
    }

    /// Two real-program rows: in the second, jemalloc is the faster peer; in both, the
    /// smaller one.
    fn real_rows() -> Vec<Row> {
        vec![
            Row {
                workload: "lua".into(),
                threads: None,
                fixed_time: false,
                cells: vec![ok(1.8, 10.0), ok(2.0, 20.0), ok(4.0, 16.0)],
            },
            Row {
                workload: "redis".into(),
                threads: None,
                fixed_time: false,
                cells: vec![ok(4.5, 8.0), ok(5.0, 40.0), ok(4.0, 32.0)],
            },
        ]
    }

    fn line<'a>(md: &'a str, section: &str, start: &str) -> &'a str {
        let from = md.find(section).expect("section");
        md[from..]
            .lines()
            .find(|l| l.starts_with(start))
            .expect("line")
    }

    #[test]
    fn real_report_compares_with_each_peer_and_the_better_one_per_row() {
        let md = markdown(&REAL, &names(), &real_rows(), "test", "");
        // hakmem's geometric means: sqrt(0.9 · 0.9), sqrt(0.45 · 1.125), sqrt(0.9 · 1.125).
        let expected = [
            ("## Time", "| workload | hakmem | mimalloc | jemalloc |"),
            (
                "## Time",
                "| lua | 1.800 (0.90 · 0.45 · 0.90) | 2.000 (1.00 · 0.50 · 1.00) \
                 | 4.000 (2.00 · 1.00 · 2.00) |",
            ),
            (
                "## Time",
                "| redis | 4.500 (0.90 · 1.12 · 1.12) | 5.000 (1.00 · 1.25 · 1.25) \
                 | 4.000 (0.80 · 1.00 · 1.00) |",
            ),
            (
                "## Time",
                "| **geometric mean** | (0.90 · 0.71 · 1.01) | (1.00 · 0.79 · 1.12) \
                 | (1.26 · 1.00 · 1.41) |",
            ),
            (
                "## Time",
                "| **highest** | (0.90 · 1.12 · 1.12) | (1.00 · 1.25 · 1.25) \
                 | (2.00 · 1.00 · 2.00) |",
            ),
            (
                "## Peak RSS",
                "| redis | 8.0 (0.20 · 0.25 · 0.25) | 40.0 (1.00 · 1.25 · 1.25) \
                 | 32.0 (0.80 · 1.00 · 1.00) |",
            ),
        ];
        for (section, want) in expected {
            let start = &want[..want[2..].find(" |").unwrap() + 2];
            assert_eq!(line(&md, section, start), want);
        }
        // No thread counts: one geometric-mean row per table, over all rows.
        assert_eq!(md.matches("| **geometric mean** |").count(), 2, "{md}");
    }

    #[test]
    fn a_failed_peer_leaves_the_other_as_the_better_one_and_is_counted() {
        let mut rows = real_rows();
        rows[1].cells[2] = Cell::Failed("CRASH (SIGSEGV)".into(), PathBuf::from("/nonexistent"));
        let md = markdown(&REAL, &names(), &rows, "test", "");
        assert_eq!(
            line(&md, "## Time", "| redis"),
            "| redis | 4.500 (0.90 · – · 0.90) | 5.000 (1.00 · – · 1.00) | CRASH (SIGSEGV) |"
        );
        assert_eq!(
            line(&md, "## Time", "| **geometric mean**"),
            "| **geometric mean** | (0.90 · 0.45 · 0.90) [2·1·2 of 2 rows] \
             | (1.00 · 0.50 · 1.00) [2·1·2 of 2 rows] | (2.00 · 1.00 · 2.00) [1·1·1 of 2 rows] |"
        );
        assert!(md.contains("- jemalloc, redis: CRASH (SIGSEGV)"));
    }

    #[test]
    fn suite_report_keeps_its_threads_column_and_references() {
        let allocs = ["hakmem", "glibc", "mimalloc"].map(String::from).to_vec();
        let rows = vec![Row {
            workload: "churn".into(),
            threads: Some(2),
            fixed_time: false,
            cells: vec![ok(1.0, 4.0), ok(2.0, 6.0), ok(1.25, 5.0)],
        }];
        let md = markdown(&SUITE, &allocs, &rows, "test", "");
        assert!(md.starts_with("# hakmem benchmark report"));
        assert!(md.contains("the ratio to glibc · to mimalloc (lower"));
        assert_eq!(
            line(&md, "## Time", "| churn"),
            "| churn | 2 | 1.000 (0.50 · 0.80) | 2.000 (1.00 · 1.60) | 1.250 (0.62 · 1.00) |"
        );
        assert_eq!(
            line(&md, "## Peak RSS", "| churn"),
            "| churn | 2 | 4.0 (0.80) | 6.0 (1.20) | 5.0 (1.00) |"
        );
        assert_eq!(
            line(&md, "## Peak RSS", "| **geometric mean**"),
            "| **geometric mean** | all | (0.80) | (1.20) | (1.00) |"
        );
    }

    fn row(workload: &str, threads: usize, costs: &[f64]) -> Row {
        Row {
            workload: workload.into(),
            threads: Some(threads),
            fixed_time: false,
            cells: costs.iter().map(|&c| ok(c, 1.0)).collect(),
        }
    }

    #[test]
    fn geometric_means_per_thread_count_then_over_all_rows() {
        let allocs = ["hakmem", "glibc", "mimalloc"].map(String::from);
        let rows = [
            row("a", 1, &[1.0, 1.0, 1.0]),
            row("a", 16, &[2.0, 1.0, 1.0]),
            row("b", 1, &[4.0, 1.0, 1.0]),
            row("b", 16, &[8.0, 1.0, 1.0]),
        ];
        let groups: Vec<(String, usize)> = mean_groups(&rows)
            .into_iter()
            .map(|(t, g)| (t, g.len()))
            .collect();
        let expected = [("1", 2), ("16", 2), ("all", 4)].map(|(t, n)| (t.to_string(), n));
        assert_eq!(groups, expected);
        let md = markdown(&SUITE, &allocs, &rows, "test", "");
        // hakmem's ratios: 1 and 4 with 1 thread, 2 and 8 with 16, all four over all rows.
        assert!(
            md.contains("| **geometric mean** | 1 | (2.00 · 2.00) |"),
            "{md}"
        );
        assert!(
            md.contains("| **geometric mean** | 16 | (4.00 · 4.00) |"),
            "{md}"
        );
        assert!(
            md.contains("| **geometric mean** | all | (2.83 · 2.83) |"),
            "{md}"
        );
        // One highest row, over all rows.
        assert!(md.contains("| **highest** | all | (8.00 · 8.00) |"), "{md}");
        assert_eq!(md.matches("| **highest** |").count(), 2, "{md}");
        let svg = svg(&allocs, &rows).unwrap();
        assert!(svg.contains("geometric mean · 16t"), "{svg}");
    }

    #[test]
    fn one_thread_count_gives_one_geometric_mean() {
        let rows = [row("a", 2, &[1.0]), row("b", 2, &[1.0])];
        let labels: Vec<String> = mean_groups(&rows).into_iter().map(|(t, _)| t).collect();
        assert_eq!(labels, ["all"]);
    }
}
