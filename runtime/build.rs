//! Stamps the build with its git commit for `caxton_build_info{version,commit}`, so a load
//! test can say which build it measured. `CAXTON_COMMIT` in the environment wins (an image
//! built from a tarball has no `.git`); without either the commit is "unknown".

use std::path::PathBuf;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

fn main() {
    println!("cargo:rerun-if-env-changed=CAXTON_COMMIT");
    let commit = std::env::var("CAXTON_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]));
    // Rebuild when HEAD moves: HEAD itself (a branch switch) and the branch's ref (a commit).
    // Only files that exist are named; a missing one would rerun this script on every build.
    for path in [git(&["rev-parse", "--git-path", "HEAD"]), head_ref()]
        .into_iter()
        .flatten()
    {
        let path = PathBuf::from(path);
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    println!(
        "cargo:rustc-env=CAXTON_COMMIT={}",
        commit.unwrap_or_else(|| "unknown".into())
    );
}

/// The file of the branch HEAD points at (`refs/heads/main`), if HEAD is on a branch.
fn head_ref() -> Option<String> {
    let name = git(&["symbolic-ref", "-q", "HEAD"])?;
    git(&["rev-parse", "--git-path", &name])
}
