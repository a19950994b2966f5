//! Generates the criterion result fixtures of `gate.rs` with real criterion runs:
//! `cargo test -p caxton-benches --test criterion_fixtures -- --ignored` (about a minute),
//! then commit `benches/tests/fixtures/criterion/`. Kept to the files the gate reads.
//!
//! - `slowdown/`: `gate_fixture/spin` saved as baseline `main` at 20 µs, re-run at 24 µs
//!   (a deliberate 20% slowdown); `gate_fixture/steady` at 10 µs both times.
//! - `identical/`: both benchmarks run twice unchanged.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::Criterion;

fn spin(d: Duration) {
    let start = Instant::now();
    while start.elapsed() < d {
        std::hint::spin_loop();
    }
}

fn run(dir: &Path, baseline: Option<&str>, compare_with: Option<&str>, spin_us: u64) {
    let mut c = Criterion::default()
        .output_directory(dir)
        .without_plots()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    if let Some(b) = baseline {
        c = c.save_baseline(b.to_owned());
    }
    if let Some(b) = compare_with {
        c = c.retain_baseline(b.to_owned(), true);
    }
    c.bench_function("gate_fixture/spin", |b| {
        b.iter(|| spin(Duration::from_micros(spin_us)))
    });
    c.bench_function("gate_fixture/steady", |b| {
        b.iter(|| spin(Duration::from_micros(10)))
    });
    c.final_summary();
}

/// Keeps `benchmark.json` and `estimates.json` of `new/`, `main/` and `change/`.
fn prune(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if path.file_name().unwrap() == "report" {
                std::fs::remove_dir_all(&path).unwrap();
            } else {
                prune(&path);
            }
        } else {
            let name = path.file_name().unwrap().to_str().unwrap();
            if name != "benchmark.json" && name != "estimates.json" {
                std::fs::remove_file(&path).unwrap();
            }
        }
    }
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/criterion")
        .join(name)
}

#[test]
#[ignore = "regenerates committed fixtures with real criterion runs"]
fn generate_criterion_fixtures() {
    for (name, second_spin_us) in [("slowdown", 24), ("identical", 20)] {
        let dir = fixture(name);
        let _ = std::fs::remove_dir_all(&dir);
        run(&dir, Some("main"), None, 20);
        run(&dir, None, Some("main"), second_spin_us);
        prune(&dir);
    }
}
