//! `cargo xtask install [--prefix DIR]` and `cargo xtask uninstall [--prefix DIR]` (default
//! `/usr/local`).
//!
//! Install builds the release and checked libraries and writes, under the prefix:
//! `lib/libhakmem.so.X.Y.Z` (soname `libhakmem.so.X`, set by `crates/hakmem_preload/build.rs`)
//! with the symlinks `libhakmem.so.X` and `libhakmem.so`, the same three for
//! `libhakmem_checked.so`, `include/hakmem.h`, `lib/pkgconfig/hakmem.pc`, the launcher
//! `bin/hakmem` (a POSIX sh script) and the manifest `share/hakmem/install-manifest.txt`:
//! every file it wrote, then every directory it created (`dir PATH` lines). Uninstall removes
//! the files the manifest names, the manifest, and the directories it names once they are
//! empty, deepest first; nothing else. Installing over an earlier install uninstalls that
//! one first, so the manifest always describes what is there.

use crate::util::{root, stdout_of, Result};
use std::path::{Path, PathBuf};

const USAGE: &str = "usage: cargo xtask install|uninstall [--prefix DIR]";
/// The version of every crate of the workspace (`[workspace.package]`), and of the install.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
const MAJOR: &str = env!("CARGO_PKG_VERSION_MAJOR");
/// Where the manifest lives, under the prefix.
const MANIFEST: &str = "share/hakmem/install-manifest.txt";

/// The prefix given with `--prefix DIR` (or `--prefix=DIR`), else `/usr/local`; absolute.
fn prefix(args: &[String]) -> Result<PathBuf> {
    let mut prefix = PathBuf::from("/usr/local");
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--prefix" {
            prefix = it.next().ok_or(USAGE)?.into();
        } else if let Some(p) = a.strip_prefix("--prefix=") {
            prefix = p.into();
        } else {
            return Err(format!("unknown argument {a}\n{USAGE}"));
        }
    }
    std::path::absolute(&prefix).map_err(|e| format!("{}: {e}", prefix.display()))
}

pub fn install_command(args: &[String]) -> Result {
    let prefix = prefix(args)?;
    let release = crate::build::release_cdylib()?;
    let checked = crate::build::checked_cdylib()?;
    install(&prefix, &release, &checked)?;
    println!("installed hakmem {VERSION} under {}", prefix.display());
    println!(
        "run a program with it: {}",
        prefix.join("bin/hakmem -- CMD ARGS...").display()
    );
    Ok(())
}

pub fn uninstall_command(args: &[String]) -> Result {
    let prefix = prefix(args)?;
    uninstall(&prefix)?;
    println!("uninstalled hakmem from {}", prefix.display());
    Ok(())
}

/// What one install writes, in order, and records.
#[derive(Default)]
struct Manifest {
    files: Vec<PathBuf>,
    dirs: Vec<PathBuf>,
}

impl Manifest {
    /// Creates `dir` and its missing parents, recording each one created.
    fn make_dir(&mut self, dir: &Path) -> Result {
        let mut missing = vec![];
        let mut d = dir;
        while !d.exists() {
            missing.push(d.to_path_buf());
            d = d.parent().ok_or(format!("{} has no parent", d.display()))?;
        }
        for d in missing.into_iter().rev() {
            std::fs::create_dir(&d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
            self.dirs.push(d);
        }
        Ok(())
    }

    /// Writes `path` with `mode` (replacing a file or symlink there) and records it.
    fn write(&mut self, path: &Path, bytes: &[u8], mode: u32) -> Result {
        use std::os::unix::fs::PermissionsExt;
        self.make_dir(path.parent().unwrap())?;
        remove_file(path)?;
        std::fs::write(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        self.files.push(path.to_path_buf());
        Ok(())
    }

    /// Makes `link` a symlink to `target` (a name in the same directory) and records it.
    fn symlink(&mut self, target: &str, link: &Path) -> Result {
        remove_file(link)?;
        std::os::unix::fs::symlink(target, link)
            .map_err(|e| format!("cannot link {} to {target}: {e}", link.display()))?;
        self.files.push(link.to_path_buf());
        Ok(())
    }

    fn text(&self) -> String {
        let mut s =
            String::from("# hakmem install manifest: `cargo xtask uninstall` removes these\n");
        for f in &self.files {
            s += &format!("{}\n", f.display());
        }
        for d in &self.dirs {
            s += &format!("dir {}\n", d.display());
        }
        s
    }

    fn parse(text: &str) -> Manifest {
        let mut m = Manifest::default();
        for line in text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            match line.strip_prefix("dir ") {
                Some(d) => m.dirs.push(d.into()),
                None => m.files.push(line.into()),
            }
        }
        m
    }
}

/// Removes a file or symlink if there is one.
fn remove_file(path: &Path) -> Result {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(format!("cannot remove {}: {e}", path.display()))
        }
        _ => Ok(()),
    }
}

/// Installs the built libraries `release` and `checked` (and the rest) under `prefix`.
pub fn install(prefix: &Path, release: &Path, checked: &Path) -> Result {
    if prefix.join(MANIFEST).exists() {
        uninstall(prefix)?;
    }
    let mut m = Manifest::default();
    let lib = prefix.join("lib");
    for (name, built) in [("libhakmem", release), ("libhakmem_checked", checked)] {
        let bytes = std::fs::read(built).map_err(|e| format!("{}: {e}", built.display()))?;
        let file = format!("{name}.so.{VERSION}");
        let soname = format!("{name}.so.{MAJOR}");
        m.write(&lib.join(&file), &bytes, 0o755)?;
        m.symlink(&file, &lib.join(&soname))?;
        m.symlink(&soname, &lib.join(format!("{name}.so")))?;
    }
    let header = std::fs::read(root().join("include/hakmem.h")).map_err(|e| e.to_string())?;
    m.write(&prefix.join("include/hakmem.h"), &header, 0o644)?;
    m.write(
        &lib.join("pkgconfig/hakmem.pc"),
        pkg_config(prefix).as_bytes(),
        0o644,
    )?;
    m.write(&prefix.join("bin/hakmem"), launcher(&lib).as_bytes(), 0o755)?;
    let manifest = prefix.join(MANIFEST);
    m.make_dir(manifest.parent().unwrap())?;
    std::fs::write(&manifest, m.text())
        .map_err(|e| format!("cannot write {}: {e}", manifest.display()))
}

/// Removes what the install under `prefix` wrote (as its manifest lists it).
pub fn uninstall(prefix: &Path) -> Result {
    let manifest = prefix.join(MANIFEST);
    let text = std::fs::read_to_string(&manifest).map_err(|e| {
        format!(
            "no hakmem install under {} ({}: {e})",
            prefix.display(),
            manifest.display()
        )
    })?;
    let m = Manifest::parse(&text);
    for f in &m.files {
        remove_file(f)?;
    }
    remove_file(&manifest)?;
    // Deepest first; a directory that holds anything else stays.
    for d in m.dirs.iter().rev() {
        let _ = std::fs::remove_dir(d);
    }
    Ok(())
}

/// `lib/pkgconfig/hakmem.pc`.
fn pkg_config(prefix: &Path) -> String {
    format!(
        "prefix={}\n\
         libdir=${{prefix}}/lib\n\
         includedir=${{prefix}}/include\n\
         \n\
         Name: hakmem\n\
         Description: a general-purpose memory allocator (malloc family, C++ new/delete, hakmem_stats)\n\
         Version: {VERSION}\n\
         Libs: -L${{libdir}} -lhakmem\n\
         Cflags: -I${{includedir}}\n",
        prefix.display()
    )
}

/// `s` as one single-quoted sh word.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `bin/hakmem`: runs a program with the library of `libdir` preloaded.
fn launcher(libdir: &Path) -> String {
    format!(
        r#"#!/bin/sh
# hakmem {VERSION}: runs a program with libhakmem preloaded (written by `cargo xtask install`).
libdir={libdir}
usage() {{
    cat <<'EOF'
usage: hakmem [--checked] [--stats] [--] CMD [ARGS...]
       hakmem --version | --help
Runs CMD with the hakmem allocator (LD_PRELOAD, after any preload already set).
  --checked  the checked build: reports double frees, invalid frees, overflows and
             free-list corruption in one line and aborts
  --stats    print the statistics report on stderr at exit (HAKMEM_STATS=1;
             HAKMEM_STATS=json is kept)
Other settings are HAKMEM_* environment variables (docs/configuration.md).
EOF
}}
name=libhakmem
while [ $# -gt 0 ]; do
    case $1 in
        --checked) name=libhakmem_checked ;;
        --stats) [ "${{HAKMEM_STATS:-}}" = json ] || HAKMEM_STATS=1; export HAKMEM_STATS ;;
        --version) echo "hakmem {VERSION}"; exit 0 ;;
        -h | --help) usage; exit 0 ;;
        --) shift; break ;;
        -*) echo "hakmem: unknown option $1" >&2; usage >&2; exit 2 ;;
        *) break ;;
    esac
    shift
done
if [ $# -eq 0 ]; then
    usage >&2
    exit 2
fi
lib=$libdir/$name.so.{MAJOR}
if [ ! -e "$lib" ]; then
    echo "hakmem: $lib is missing" >&2
    exit 127
fi
LD_PRELOAD=${{LD_PRELOAD:+$LD_PRELOAD:}}$lib
export LD_PRELOAD
exec "$@"
"#,
        libdir = sh_quote(&libdir.display().to_string())
    )
}

/// The step `install` of `cargo xtask test`: installs `release` and `checked` into a fresh
/// prefix under the target directory (twice: the second over the first), checks the sonames
/// and symlinks, builds `tests/install/uses_hakmem.c` with `pkg-config --cflags --libs
/// hakmem` and runs it (linked, it must find the installed library mapped and its
/// allocations counted by `hakmem_stats`), runs programs through the launcher (the release
/// or checked library must be mapped, after a preload already set; `--stats`, `--version`,
/// `--help`, a bad option), then uninstalls and checks that only what was there before
/// remains.
pub fn test(release: &Path, checked: &Path) -> Result {
    use std::process::Command;
    let work = crate::util::target_dir().join("install-test");
    let _ = std::fs::remove_dir_all(&work);
    let before = work.join("prefix/lib/kept.txt");
    std::fs::create_dir_all(before.parent().unwrap()).map_err(|e| e.to_string())?;
    std::fs::write(&before, "a file of the user's: uninstall keeps it\n")
        .map_err(|e| e.to_string())?;
    let prefix = std::fs::canonicalize(work.join("prefix")).map_err(|e| e.to_string())?;
    let lib = prefix.join("lib");
    install(&prefix, release, checked)?;
    install(&prefix, release, checked)?;

    let file = |name: &str| lib.join(format!("{name}.so.{VERSION}"));
    for name in ["libhakmem", "libhakmem_checked"] {
        let soname = format!("{name}.so.{MAJOR}");
        let dynamic = stdout_of(Command::new("readelf").arg("-d").arg(file(name)))?;
        if !dynamic.contains(&format!("Library soname: [{soname}]")) {
            return Err(format!("{} has no soname {soname}", file(name).display()));
        }
        for (link, target) in [
            (soname.clone(), format!("{name}.so.{VERSION}")),
            (format!("{name}.so"), soname),
        ] {
            let found = std::fs::read_link(lib.join(&link)).map_err(|e| format!("{link}: {e}"))?;
            if found != Path::new(&target) {
                return Err(format!(
                    "{link} points to {}, not {target}",
                    found.display()
                ));
            }
        }
    }

    let pkg_config = |args: &[&str]| {
        stdout_of(
            Command::new("pkg-config")
                .args(args)
                .env("PKG_CONFIG_PATH", lib.join("pkgconfig")),
        )
        .map(|s| s.trim().to_string())
        .map_err(|e| format!("{e} (pkg-config is a Debian package; .ci/run installs it)"))
    };
    let version = pkg_config(&["--modversion", "hakmem"])?;
    if version != VERSION {
        return Err(format!("pkg-config says version {version}, not {VERSION}"));
    }
    let flags = pkg_config(&["--cflags", "--libs", "hakmem"])?;
    // The same program as C and as C++ (the header's `extern "C"`), linked to the install.
    for (compiler, lang) in [("cc", "c"), ("c++", "c++")] {
        let exe = work.join(format!("uses_hakmem-{lang}"));
        stdout_of(
            Command::new(compiler)
                .args(["-x", lang, "-O1", "-Wall", "-o"])
                .arg(&exe)
                .arg(root().join("tests/install/uses_hakmem.c"))
                .args(["-x", "none"])
                .args(flags.split_whitespace()),
        )?;
        let needed = stdout_of(Command::new("readelf").arg("-d").arg(&exe))?;
        if !needed.contains(&format!("Shared library: [libhakmem.so.{MAJOR}]")) {
            return Err(format!(
                "{} does not need libhakmem.so.{MAJOR}:\n{needed}",
                exe.display()
            ));
        }
        stdout_of(
            Command::new(&exe)
                .arg(file("libhakmem"))
                .env("LD_LIBRARY_PATH", &lib)
                .env_remove("LD_PRELOAD"),
        )?;
    }
    let exe = work.join("uses_hakmem-c");

    // The launcher: which library it maps, and its options.
    let launch = |preload: Option<&Path>, args: &[&str]| {
        let mut c = Command::new(prefix.join("bin/hakmem"));
        c.args(args)
            .env_remove("LD_PRELOAD")
            .env_remove("HAKMEM_STATS");
        if let Some(p) = preload {
            c.env("LD_PRELOAD", p);
        }
        crate::test::output_limited(&mut c, std::time::Duration::from_secs(60))
    };
    let maps = |preload: Option<&Path>, args: &[&str]| -> Result<String> {
        let out = launch(preload, &[args, &["cat", "/proc/self/maps"]].concat())?;
        if !out.status.success() {
            return Err(format!("hakmem {args:?} cat: {}", out.status));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let mapped = |text: &str, path: &Path| {
        text.lines()
            .any(|l| l.ends_with(&format!(" {}", path.display())))
    };
    let m = maps(None, &["--"])?;
    if !mapped(&m, &file("libhakmem")) || mapped(&m, &file("libhakmem_checked")) {
        return Err(format!(
            "`hakmem -- cat /proc/self/maps` does not map {} alone:\n{m}",
            file("libhakmem").display()
        ));
    }
    let m = maps(None, &["--checked"])?;
    if !mapped(&m, &file("libhakmem_checked")) || mapped(&m, &file("libhakmem")) {
        return Err(format!(
            "`hakmem --checked cat /proc/self/maps` does not map {} alone:\n{m}",
            file("libhakmem_checked").display()
        ));
    }
    // A preload already set stays, and comes first.
    let marker = work.join("marker.so");
    stdout_of(
        Command::new("cc")
            .args(["-shared", "-fPIC", "-x", "c", "/dev/null", "-o"])
            .arg(&marker),
    )?;
    let m = maps(Some(&marker), &[])?;
    if !mapped(&m, &marker) || !mapped(&m, &file("libhakmem")) {
        return Err(format!(
            "with LD_PRELOAD set, the launcher does not map both it and hakmem:\n{m}"
        ));
    }
    let out = launch(
        None,
        &[
            "--stats",
            "--",
            exe.to_str().unwrap(),
            file("libhakmem").to_str().unwrap(),
        ],
    )?;
    let err = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() || !err.contains("hakmem statistics") {
        return Err(format!(
            "`hakmem --stats` printed no statistics ({}):\n{err}",
            out.status
        ));
    }
    let out = launch(None, &["--version"])?;
    if !out.status.success() || out.stdout != format!("hakmem {VERSION}\n").as_bytes() {
        return Err(format!(
            "`hakmem --version` printed {:?}",
            String::from_utf8_lossy(&out.stdout)
        ));
    }
    let out = launch(None, &["--help"])?;
    if !out.status.success() || !out.stdout.starts_with(b"usage: hakmem") {
        return Err(format!(
            "`hakmem --help` printed {:?}",
            String::from_utf8_lossy(&out.stdout)
        ));
    }
    for bad in [&["--bogus", "true"][..], &[]] {
        let out = launch(None, bad)?;
        let usage_error = out.stderr.starts_with(b"usage: hakmem")
            || out.stderr.starts_with(b"hakmem: unknown option");
        if out.status.code() != Some(2) || !usage_error {
            return Err(format!(
                "`hakmem {bad:?}`: {}, not a usage error",
                out.status
            ));
        }
    }

    uninstall(&prefix)?;
    let mut left = vec![];
    let mut dirs = vec![prefix.clone()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).map_err(|e| e.to_string())?.flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p.clone());
            }
            left.push(p);
        }
    }
    if left != [lib.clone(), lib.join("kept.txt")] {
        return Err(format!("after uninstall the prefix holds {left:?}"));
    }
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_round_trips() {
        let m = Manifest {
            files: vec!["/p/lib/a.so".into(), "/p/bin/hakmem".into()],
            dirs: vec!["/p/bin".into(), "/p/share/hakmem".into()],
        };
        let back = Manifest::parse(&m.text());
        assert_eq!(back.files, m.files);
        assert_eq!(back.dirs, m.dirs);
    }

    #[test]
    fn quotes_for_sh() {
        assert_eq!(sh_quote("/usr/local/lib"), "'/usr/local/lib'");
        assert_eq!(sh_quote("/a b/it's"), r"'/a b/it'\''s'");
    }

    #[test]
    fn prefix_defaults_to_usr_local() {
        assert_eq!(prefix(&[]).unwrap(), Path::new("/usr/local"));
        let args = ["--prefix".to_string(), "/opt/h".into()];
        assert_eq!(prefix(&args).unwrap(), Path::new("/opt/h"));
        assert_eq!(prefix(&["--prefix=/x".into()]).unwrap(), Path::new("/x"));
        assert!(prefix(&["--bogus".into()]).is_err());
    }
}
