//! `cargo xtask`: builds, tests and benchmarks for hakmem.
//!
//! Commands:
//! - `cargo xtask build [--checked]`  `target/release/libhakmem.so` (`libhakmem_checked.so`)
//! - `cargo xtask install [--prefix DIR]`  the libraries, header, pkg-config file and launcher
//!   `bin/hakmem` under DIR (default `/usr/local`); `cargo xtask uninstall [--prefix DIR]`
//! - `cargo xtask test [--only S] [--keep-going]`  every test: cargo tests, C programs and real programs under LD_PRELOAD
//! - `cargo xtask bench [...]`        compare hakmem with glibc, mimalloc and jemalloc (`--real`: on real programs, `--memory`: memory held over time)
//! - `cargo xtask fuzz <target|all> [--time SECS] [--cases N] [--seed S]`  long model-test runs
//!   (targets: tls_sll, refill, superslab, front_api, hakmem; see docs/testing.md)

mod bench;
mod bench_instr;
mod bench_memory;
mod bench_real;
mod bench_report;
mod build;
mod fuzz;
mod install;
mod misuse;
mod process;
mod test;
mod util;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (cmd, rest) = match args.split_first() {
        Some((c, r)) => (c.as_str(), r.to_vec()),
        None => ("help", Vec::new()),
    };
    let result = match cmd {
        "build" => build::command(&rest),
        "install" => install::install_command(&rest),
        "uninstall" => install::uninstall_command(&rest),
        "test" => test::run(&rest),
        "bench" => bench::run(&rest),
        "fuzz" => fuzz::run(&rest),
        _ => {
            eprintln!(
                "usage: cargo xtask <build [--checked] | install [--prefix DIR] \
                 | uninstall [--prefix DIR] | test [--only S] [--keep-going] \
                 | bench [--quick] [...] | fuzz <target|all> [--time SECS] [--cases N] [--seed S]>"
            );
            std::process::exit(if cmd == "help" { 0 } else { 2 });
        }
    };
    if let Err(e) = result {
        eprintln!("xtask {cmd}: error: {e}");
        std::process::exit(1);
    }
}
