//! `cargo xtask test`: every test of the project.

use crate::util::{cargo, target_dir, Result};

pub fn run(_args: &[String]) -> Result {
    let release = crate::build::release_cdylib()?;
    crate::util::run(cargo().args(["test", "--workspace"]))?;
    let checked = crate::build::checked_cdylib()?;
    let mut results = crate::process::run(&target_dir().join("process-tests"), &release);
    results.extend(crate::misuse::run(
        &target_dir().join("misuse"),
        &release,
        &checked,
    ));
    let failed = results.iter().filter(|(_, r)| r.is_err()).count();
    for (name, r) in &results {
        match r {
            Ok(()) => println!("ok {name}"),
            Err(e) => println!("FAILED {name}: {e}"),
        }
    }
    println!("{} passed, {} failed", results.len() - failed, failed);
    if failed > 0 {
        return Err(format!("{failed} checks failed"));
    }
    Ok(())
}
