//! The HTML reports open in a real headless Chromium (Debian `chromium`, installed by
//! ci/install-tools): the page renders (screenshot far from blank, DOM with every chart), the
//! console stays clean and nothing is fetched from the network.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use caxton_reports::compare::{self, CompareOptions};
use caxton_reports::html::{self, FlamegraphView};
use caxton_reports::model::{FLAMEGRAPH_FILE, FlamegraphRef, RunReport};
use common::{fixture_v1, synthetic_report, temp_dir};

struct Opened {
    screenshot_bytes: u64,
    /// Chromium's log lines of console messages (`CONSOLE`, `Uncaught`).
    console: Vec<String>,
    dom: String,
}

fn chromium(args: &[&str], user_dir: &Path) -> std::process::Output {
    Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            // Any host name fails to resolve: a report that fetched anything would log it.
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", user_dir.display()))
        .args(args)
        .output()
        .expect("cannot run chromium (is it installed? run ci/install-tools as root)")
}

/// Screenshot (1280x2000), console lines and the rendered DOM of a local file.
fn open(page: &Path, work: &Path) -> Opened {
    let url = format!("file://{}", page.canonicalize().unwrap().display());
    let png = work.join(format!(
        "{}.png",
        page.file_stem().unwrap().to_string_lossy()
    ));
    let shot = chromium(
        &[
            &format!("--screenshot={}", png.display()),
            "--window-size=1280,2000",
            &url,
        ],
        &work.join("profile-shot"),
    );
    let stderr = String::from_utf8_lossy(&shot.stderr).into_owned();
    let console = stderr
        .lines()
        .filter(|l| {
            l.contains(":CONSOLE")
                || l.contains("Uncaught")
                || l.contains("Failed to load resource")
        })
        .map(str::to_owned)
        .collect();
    let screenshot_bytes = std::fs::metadata(&png)
        .unwrap_or_else(|e| panic!("no screenshot {}: {e}\n{stderr}", png.display()))
        .len();
    let dom = chromium(&["--dump-dom", &url], &work.join("profile-dom"));
    Opened {
        screenshot_bytes,
        console,
        dom: String::from_utf8_lossy(&dom.stdout).into_owned(),
    }
}

/// A PNG of an empty white page of the same size: what "blank" compresses to. A rendered
/// report (text, tables, charts) compresses far worse; this is the non-blank check without a
/// PNG decoder.
fn blank_size(work: &Path) -> u64 {
    let page = work.join("blank.html");
    std::fs::write(&page, "<!DOCTYPE html><html><body></body></html>").unwrap();
    open(&page, work).screenshot_bytes
}

/// No fetch can leave the file: every src/href is a data URI, a fragment or a relative path.
fn assert_self_contained(html: &str) {
    for attr in ["src=\"", "href=\""] {
        for value in html.split(attr).skip(1) {
            let value = value.split('"').next().unwrap_or_default();
            assert!(
                value.starts_with("data:") || value.starts_with('#') || !value.contains(':'),
                "{attr}{value}"
            );
        }
    }
    for needle in ["<script", "<link", "@import", "url("] {
        assert!(!html.contains(needle), "{needle}");
    }
}

fn assert_renders(page: &Path, work: &Path, blank: u64) -> Opened {
    let opened = open(page, work);
    assert!(opened.console.is_empty(), "console: {:#?}", opened.console);
    assert!(
        opened.screenshot_bytes > 4 * blank,
        "screenshot of {} is {} bytes, a blank page {blank}",
        page.display(),
        opened.screenshot_bytes
    );
    assert!(opened.dom.contains("</main>"), "{}", opened.dom);
    opened
}

#[test]
fn the_v1_fixture_renders_in_chromium() {
    let work = temp_dir("html-v1");
    let json = work.join("report.json");
    std::fs::copy(fixture_v1(), &json).unwrap();
    let page = html::write_report(&json).unwrap();
    assert_eq!(page, work.join("report.html"));
    let text = std::fs::read_to_string(&page).unwrap();
    assert_self_contained(&text);
    let blank = blank_size(&work);
    let opened = assert_renders(&page, &work, blank);
    // Header, thresholds with values, a table per stage, five charts, the command line.
    for needle in [
        "v1-fixture",
        "PASSED",
        "http_req_duration: p(95)&lt;2000",
        "p(95)=3.56ms",
        "<h3>ramp-5</h3>",
        "<h3>ramp-0</h3>",
        "Requests per second",
        "Latency by percentile",
        "99.9%",
        "--stages 2s:5,2s:0",
        "No flamegraph",
    ] {
        assert!(opened.dom.contains(needle), "{needle} missing from the DOM");
    }
    assert_eq!(opened.dom.matches("<svg class=\"chart\"").count(), 5);
    let _ = std::fs::remove_dir_all(work);
}

#[test]
fn a_current_report_with_a_flamegraph_and_hostile_text_renders() {
    let work = temp_dir("html-v2");
    let mut report = synthetic_report(1, 5_000, 1.0);
    report.run_id = "run <script>alert(1)</script>".into();
    report
        .command_line
        .push("--threshold=it's \"quoted\" & <b>".into());
    report.thresholds[0].ok = false;
    report.flamegraph = Some(FlamegraphRef {
        path: FLAMEGRAPH_FILE.into(),
        stage: "ramp-5".into(),
        ..Default::default()
    });
    let json = work.join("report.json");
    report.write(&json).unwrap();
    std::fs::write(
        work.join(FLAMEGRAPH_FILE),
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="400" height="40"><rect width="400" height="40" fill="#e25822"/><text x="4" y="24">main</text></svg>"##,
    )
    .unwrap();
    let read = RunReport::read(&json).unwrap();
    let view = FlamegraphView::of(&read, &json).unwrap();
    assert!(view.svg.is_some());
    let page = html::write_report(&json).unwrap();
    let text = std::fs::read_to_string(&page).unwrap();
    assert_self_contained(&text);
    assert!(!text.contains("<script>alert"), "unescaped run id");
    let blank = blank_size(&work);
    let opened = assert_renders(&page, &work, blank);
    assert!(opened.dom.contains("FAILED: 1 of 2 thresholds breached"));
    assert!(opened.dom.contains("src=\"data:image/svg+xml;base64,"));
    assert!(opened.dom.contains("href=\"flamegraph.svg\""));
    assert!(opened.dom.contains("during stage <code>ramp-5</code>"));
    let _ = std::fs::remove_dir_all(work);
}

#[test]
fn the_comparison_page_overlays_both_runs() {
    let work = temp_dir("html-compare");
    let baseline = synthetic_report(1, 5_000, 1.0);
    let current = synthetic_report(2, 5_000, 1.3);
    let c = compare::compare(&baseline, &current, &CompareOptions::default()).unwrap();
    let page: PathBuf = work.join("compare.html");
    html::write_file(
        &page,
        &html::render_comparison(&baseline, &current, &c, None, None).unwrap(),
    )
    .unwrap();
    assert_self_contained(&std::fs::read_to_string(&page).unwrap());
    let blank = blank_size(&work);
    let opened = assert_renders(&page, &work, blank);
    assert!(opened.dom.contains("REGRESSED"));
    // Every chart has a baseline and a current line.
    assert!(
        opened.dom.matches("<title>baseline").count() >= 5,
        "{}",
        opened.dom
    );
    assert!(opened.dom.matches("<title>current").count() >= 5);
    let _ = std::fs::remove_dir_all(work);
}

#[test]
fn the_console_check_catches_a_script_error() {
    // Guards the check above: a page that throws must be caught by the same filter.
    let work = temp_dir("html-bad");
    let page = work.join("bad.html");
    std::fs::write(
        &page,
        "<html><body><script>throw new Error('kaboom')</script></body></html>",
    )
    .unwrap();
    let opened = open(&page, &work);
    assert!(
        opened.console.iter().any(|l| l.contains("kaboom")),
        "{:?}",
        opened.console
    );
    let _ = std::fs::remove_dir_all(work);
}
