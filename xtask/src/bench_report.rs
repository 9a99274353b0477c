//! The report of `cargo xtask bench`: markdown tables and a hand-written SVG chart.

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
    pub threads: usize,
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

/// `a / b` of two cells' values, when both have one.
fn ratio(row: &Row, a: usize, b: Option<usize>, pick: fn((f64, f64)) -> f64) -> Option<f64> {
    let (x, y) = (row.cells[a].ok()?, row.cells[b?].ok()?);
    Some(pick(x) / pick(y))
}

fn geomean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| (v.iter().map(|x| x.ln()).sum::<f64>() / v.len() as f64).exp())
}

/// 28.4M, 1.21k, 733: three significant digits at most.
fn si(x: f64) -> String {
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

fn header(out: &mut String, allocs: &[String]) {
    let _ = writeln!(out, "| workload | threads | {} |", allocs.join(" | "));
    let _ = writeln!(out, "|---|---:|{}", "---:|".repeat(allocs.len()));
}

fn row_label(r: &Row) -> String {
    format!("{}{}", r.workload, if r.fixed_time { " †" } else { "" })
}

/// One geometric-mean cell: the mean of the ratios over rows where both sides have a value.
fn geo_cell(
    rows: &[Row],
    a: usize,
    base: Option<usize>,
    pick: fn((f64, f64)) -> f64,
) -> (Option<f64>, usize) {
    let v: Vec<f64> = rows
        .iter()
        .filter_map(|r| ratio(r, a, base, pick))
        .collect();
    (geomean(&v), v.len())
}

pub fn markdown(allocs: &[String], rows: &[Row], mode: &str, machine: &str) -> String {
    let pos = |n: &str| allocs.iter().position(|a| a == n);
    let (glibc, mi) = (pos("glibc"), pos("mimalloc"));
    let cost = |x: (f64, f64)| x.0;
    let rss = |x: (f64, f64)| x.1;
    let mut s = String::new();
    let _ = writeln!(s, "# hakmem benchmark report\n\n{machine}- mode: {mode}\n");

    let _ = writeln!(
        s,
        "## Time\n\nMedian wall time in seconds, then in brackets the ratio to glibc · to mimalloc \
         (lower is better). † runs for a fixed time: its ratios compare the inverse of the \
         throughput it reports.\n"
    );
    header(&mut s, allocs);
    let n = rows.len();
    for r in rows {
        let cells: Vec<String> = (0..allocs.len())
            .map(|a| match &r.cells[a] {
                Cell::Ok { wall, .. } => {
                    format!(
                        "{wall:.3} ({} · {})",
                        opt(ratio(r, a, glibc, cost)),
                        opt(ratio(r, a, mi, cost))
                    )
                }
                c => c.failure().unwrap(),
            })
            .collect();
        let _ = writeln!(
            s,
            "| {} | {} | {} |",
            row_label(r),
            r.threads,
            cells.join(" | ")
        );
    }
    let geo: Vec<String> = (0..allocs.len())
        .map(|a| {
            let ((g, ng), (m, nm)) = (geo_cell(rows, a, glibc, cost), geo_cell(rows, a, mi, cost));
            let count = if ng == n && nm == n {
                String::new()
            } else {
                format!(" [{ng}·{nm} of {n} rows]")
            };
            format!("({} · {}){count}", opt(g), opt(m))
        })
        .collect();
    let _ = writeln!(s, "| **geometric mean** | | {} |", geo.join(" | "));

    let _ = writeln!(s, "\n## Peak RSS\n\nMedian peak resident set in MiB, then in brackets the ratio to mimalloc (lower is better).\n");
    header(&mut s, allocs);
    for r in rows {
        let cells: Vec<String> = (0..allocs.len())
            .map(|a| match &r.cells[a] {
                Cell::Ok { rss_kib, .. } => {
                    format!("{:.1} ({})", rss_kib / 1024.0, opt(ratio(r, a, mi, rss)))
                }
                c => c.failure().unwrap(),
            })
            .collect();
        let _ = writeln!(
            s,
            "| {} | {} | {} |",
            row_label(r),
            r.threads,
            cells.join(" | ")
        );
    }
    let geo: Vec<String> = (0..allocs.len())
        .map(|a| {
            let (m, nm) = geo_cell(rows, a, mi, rss);
            format!(
                "({}){}",
                opt(m),
                if nm == n {
                    String::new()
                } else {
                    format!(" [{nm} of {n} rows]")
                }
            )
        })
        .collect();
    let _ = writeln!(s, "| **geometric mean** | | {} |", geo.join(" | "));

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
        header(&mut s, allocs);
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
                "| {} | {} | {} |",
                row_label(r),
                r.threads,
                cells.join(" | ")
            );
        }
    }

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
                    "- {name}, {} with {} thread(s): {e}; last output: `{}` ({})",
                    r.workload,
                    r.threads,
                    tail.join(" / ").replace('`', "'"),
                    log.display()
                );
            }
        }
    }
    if !problems.is_empty() {
        let _ = writeln!(s, "\n## Failures\n\n{problems}");
    }
    s
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn color(name: &str) -> &'static str {
    match name {
        "hakmem" => "#d62728",
        "hakmem-base" => "#ff9896",
        "hakmem-checked" => "#9467bd",
        "glibc" => "#7f7f7f",
        "jemalloc" => "#1f77b4",
        _ => "#2ca02c",
    }
}

/// Horizontal bars of each allocator's time ratio to mimalloc per workload, on a log scale
/// from 1/4 to 4 (bars beyond are cut, their label gives the value). None without mimalloc.
pub fn svg(allocs: &[String], rows: &[Row]) -> Option<String> {
    let mi = allocs.iter().position(|a| a == "mimalloc")?;
    let shown: Vec<usize> = (0..allocs.len()).filter(|&a| a != mi).collect();
    let (label, plot, bar, gap, top) = (200.0, 560.0, 12.0, 10.0, 70.0);
    let group = shown.len() as f64 * bar + gap;
    let (width, height) = (
        label + plot + 110.0,
        top + (rows.len() + 1) as f64 * group + 30.0,
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
    // One group per row, then the geometric means: per allocator a ratio, or why there is none.
    let mut groups: Vec<(String, Vec<std::result::Result<f64, String>>)> = rows
        .iter()
        .map(|r| {
            let bars = shown
                .iter()
                .map(|&a| match ratio(r, a, Some(mi), |x| x.0) {
                    Some(q) => Ok(q),
                    None => Err(r.cells[a]
                        .failure()
                        .or(r.cells[mi].failure().map(|f| format!("mimalloc {f}")))
                        .unwrap_or_default()),
                })
                .collect();
            (format!("{} · {}t", row_label(r), r.threads), bars)
        })
        .collect();
    let geo = shown
        .iter()
        .map(|&a| {
            geo_cell(rows, a, Some(mi), |x| x.0)
                .0
                .ok_or_else(String::new)
        })
        .collect();
    groups.push(("geometric mean".into(), geo));
    for (k, (name, bars)) in groups.iter().enumerate() {
        let y0 = top + k as f64 * group;
        let weight = if k == rows.len() { "bold" } else { "normal" };
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
