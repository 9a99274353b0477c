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

/// The rows geometric means are taken over, with the thread count they are labelled by: those
/// of each thread count when there are several, then all rows.
fn mean_groups(rows: &[Row]) -> Vec<(String, Vec<&Row>)> {
    let mut counts: Vec<usize> = rows.iter().map(|r| r.threads).collect();
    counts.sort_unstable();
    counts.dedup();
    let mut groups = Vec::new();
    if counts.len() > 1 {
        for t in counts {
            groups.push((
                t.to_string(),
                rows.iter().filter(|r| r.threads == t).collect(),
            ));
        }
    }
    groups.push(("all".to_string(), rows.iter().collect()));
    groups
}

/// One geometric-mean cell: the mean of the ratios over rows where both sides have a value.
fn geo_cell(
    rows: &[&Row],
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

/// The geometric-mean rows of a table (see `mean_groups`); `cell(group, a)` is allocator a's.
fn mean_rows(
    s: &mut String,
    allocs: &[String],
    rows: &[Row],
    cell: impl Fn(&[&Row], usize) -> String,
) {
    for (threads, group) in mean_groups(rows) {
        let cells: Vec<String> = (0..allocs.len()).map(|a| cell(&group, a)).collect();
        let _ = writeln!(
            s,
            "| **geometric mean** | {threads} | {} |",
            cells.join(" | ")
        );
    }
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
    mean_rows(&mut s, allocs, rows, |group, a| {
        let n = group.len();
        let ((g, ng), (m, nm)) = (
            geo_cell(group, a, glibc, cost),
            geo_cell(group, a, mi, cost),
        );
        let count = if ng == n && nm == n {
            String::new()
        } else {
            format!(" [{ng}·{nm} of {n} rows]")
        };
        format!("({} · {}){count}", opt(g), opt(m))
    });

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
    mean_rows(&mut s, allocs, rows, |group, a| {
        let (n, (m, nm)) = (group.len(), geo_cell(group, a, mi, rss));
        let count = if nm == n {
            String::new()
        } else {
            format!(" [{nm} of {n} rows]")
        };
        format!("({}){count}", opt(m))
    });

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
    for (threads, group) in mean_groups(rows) {
        let geo = shown
            .iter()
            .map(|&a| {
                geo_cell(&group, a, Some(mi), |x| x.0)
                    .0
                    .ok_or_else(String::new)
            })
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

    fn row(workload: &str, threads: usize, costs: &[f64]) -> Row {
        Row {
            workload: workload.into(),
            threads,
            fixed_time: false,
            cells: costs
                .iter()
                .map(|&c| Cell::Ok {
                    wall: c,
                    cost: c,
                    rss_kib: 1024.0,
                    throughput: None,
                })
                .collect(),
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
        let md = markdown(&allocs, &rows, "test", "");
        // hakmem's ratios: 1 and 4 with 1 thread, 2 and 8 with 16, all four over all rows.
        assert!(md.contains("| **geometric mean** | 1 | (2.00 · 2.00) |"), "{md}");
        assert!(md.contains("| **geometric mean** | 16 | (4.00 · 4.00) |"), "{md}");
        assert!(md.contains("| **geometric mean** | all | (2.83 · 2.83) |"), "{md}");
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
