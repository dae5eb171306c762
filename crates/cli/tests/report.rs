//! `tapestry report`: one self-contained HTML page of a run or a comparison, checked as text
//! and rendered in headless Chromium (`TAPESTRY_CHROMIUM`, `chromium` or `/usr/bin/chromium`),
//! whose screenshot must show the plots. Without Chromium the rendering check prints why and
//! passes, unless `TAPESTRY_REQUIRE_CHROMIUM` is set (as `.ci/run` sets it), where it fails.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

mod common;
use common::{assert_bad, assert_ok, chromium, required, tapestry};
use std::time::{Duration, Instant};

const SMALL: [&str; 6] = ["--limit", "256", "--batch-size", "64", "-q", "--epochs"];

/// A screenshot of `page` (1100 x 2400 pixels) by headless Chromium, within a minute.
fn screenshot(chromium: &str, page: &Path, png: &Path, profile: &Path) -> image::RgbImage {
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1100,2400",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", page.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            panic!("chromium took more than a minute to render {}", page.display());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    image::open(png).unwrap_or_else(|e| panic!("{}: {e}", png.display())).to_rgb8()
}

/// Pixels of strong colour (the plots' lines and heatmap cells; text is black on white).
fn coloured_pixels(img: &image::RgbImage) -> usize {
    img.pixels()
        .filter(|p| {
            let (max, min) = (p.0.iter().max().unwrap(), p.0.iter().min().unwrap());
            max - min > 80
        })
        .count()
}

#[test]
fn a_run_report_is_one_self_contained_page_that_renders_its_plots() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert_ok(&tapestry(&[&["train"][..], &SMALL, &["3", "--out", "run"]].concat(), d), "tapestry");
    let stdout = assert_ok(&tapestry(&["report", "run"], d), "tapestry");
    assert!(stdout.contains("wrote run/report.html"), "{stdout}");
    let page = d.join("run/report.html");
    let html = fs::read_to_string(&page).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    // Every plot the run wrote is inlined, and nothing is fetched from elsewhere.
    let svgs = fs::read_dir(d.join("run"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".svg"))
        .count();
    assert!(svgs >= 4, "{svgs} plots");
    assert_eq!(html.matches("<svg").count(), svgs);
    for external in ["src=\"http", "href=\"http", "<script", "<link", "<img"] {
        assert!(!html.contains(external), "the page holds {external}");
    }
    // The per-epoch table (three rows), the configuration and the final metrics are there.
    let log = fs::read_to_string(d.join("run/metrics.jsonl")).unwrap();
    let last: serde_json::Value =
        serde_json::from_str(log.lines().rfind(|l| l.contains("\"kind\":\"epoch\"")).unwrap())
            .unwrap();
    let accuracy = last["test"][0]["value"].as_f64().unwrap();
    assert!(html.contains(&format!("<td>{accuracy:.4}</td>")), "final accuracy {accuracy:.4}");
    assert_eq!(html.matches("<tr><td>").count(), 1 + 3, "one summary row and three epochs");
    assert!(
        html.contains("method = &quot;gradnorm&quot;") || html.contains("method = \"gradnorm\"")
    );

    let Some(chromium) = required(chromium(), "TAPESTRY_REQUIRE_CHROMIUM") else { return };
    let shot = screenshot(&chromium, &page, &d.join("shot.png"), &d.join("profile"));
    assert_eq!(shot.dimensions(), (1100, 2400));
    let ink = shot.pixels().filter(|p| p.0.iter().any(|&c| c < 200)).count();
    let coloured = coloured_pixels(&shot);
    println!("screenshot: {ink} dark pixels, {coloured} coloured pixels");
    assert!(ink > 20_000, "the page rendered nearly blank: {ink} dark pixels");
    assert!(coloured > 5_000, "the plots did not render: {coloured} coloured pixels");
    // The check can fail: the same page without its plots has almost no colour.
    let mut bare = html.clone();
    while let (Some(a), Some(b)) = (bare.find("<svg"), bare.find("</svg>")) {
        bare.replace_range(a..b + "</svg>".len(), "");
    }
    let bare_page = d.join("bare.html");
    fs::write(&bare_page, bare).unwrap();
    let bare_shot = screenshot(&chromium, &bare_page, &d.join("bare.png"), &d.join("profile2"));
    let bare_coloured = coloured_pixels(&bare_shot);
    println!("without its plots: {bare_coloured} coloured pixels");
    assert!(bare_coloured < 2_000, "{bare_coloured} coloured pixels without plots");
}

#[test]
fn a_comparison_report_ranks_runs_by_delta_p_against_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let compare = ["compare", "--methods", "ew,mgda", "--out", "cmp"];
    assert_ok(&tapestry(&[&compare[..], &SMALL[..], &["2"]].concat(), d), "tapestry");
    assert_ok(&tapestry(&["report", "cmp"], d), "tapestry");
    let html = fs::read_to_string(d.join("cmp/report.html")).unwrap();
    assert!(html.contains("<h2>Comparison</h2>"));
    assert!(html.contains("cmp/tradeoff.svg"));
    // The baseline's Δp against itself is zero; MGDA's is the one compare.json records.
    let record: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(d.join("cmp/compare.json")).unwrap()).unwrap();
    let mgda = record["results"][1]["delta_p_percent"].as_f64().unwrap();
    assert!(html.contains(">+0.00</td>"), "baseline row");
    assert!(html.contains(&format!(">{mgda:+.2}</td>")), "mgda's Δp {mgda:+.2}");
    // Several run directories: the page goes to the current directory unless --out says.
    assert_ok(&tapestry(&["report", "cmp/ew", "cmp/mgda", "--out", "two.html"], d), "tapestry");
    let two = fs::read_to_string(d.join("two.html")).unwrap();
    assert!(two.contains(&format!(">{mgda:+.2}</td>")));
}

#[test]
fn report_refuses_what_it_cannot_read() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert_bad(&tapestry(&["report", "nothing"], d), "is not a run directory");
    fs::create_dir(d.join("empty")).unwrap();
    assert_bad(&tapestry(&["report", "empty"], d), "holds neither metrics.jsonl");
    fs::create_dir(d.join("torn")).unwrap();
    fs::write(d.join("torn/metrics.jsonl"), "{\"kind\":\"run\"\n").unwrap();
    assert_bad(&tapestry(&["report", "torn"], d), "torn/metrics.jsonl line 1: not a JSON record");
    fs::write(d.join("torn/metrics.jsonl"), "{\"kind\":\"run\",\"config\":{}}\n").unwrap();
    assert_bad(&tapestry(&["report", "torn"], d), "is not the log of a `tapestry train` run");
    assert_ok(&tapestry(&[&["train"][..], &SMALL, &["1", "--out", "all"]].concat(), d), "tapestry");
    let one =
        [&["train"][..], &SMALL, &["1", "--out", "one", "--tasks", "left_digit", "--method", "ew"]]
            .concat();
    assert_ok(&tapestry(&one, d), "tapestry");
    assert_bad(&tapestry(&["report", "all", "one"], d), "so one report cannot compare them");
    assert!(!d.join("report.html").exists());
    assert_bad(&tapestry(&["report", "all", "--out", "one"], d), "is a directory");
}

#[test]
fn a_replaced_run_loses_its_old_report_and_exported_model() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let train = [&["train"][..], &SMALL, &["1", "--out", "run"]].concat();
    assert_ok(&tapestry(&train, d), "tapestry");
    assert_ok(&tapestry(&["report", "run"], d), "tapestry");
    assert_ok(&tapestry(&["export", "--pytorch", "run"], d), "tapestry");
    assert!(d.join("run/report.html").is_file() && d.join("run/model.py").is_file());
    assert_ok(&tapestry(&[&train[..], &["--force", "--arch", "mtan"]].concat(), d), "tapestry");
    assert!(!d.join("run/report.html").exists(), "a report of the old run");
    assert!(!d.join("run/model.py").exists(), "a model.py of the old architecture");
}
