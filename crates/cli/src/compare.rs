//! `tapestry compare`: several weighting methods and architectures on the same data, preset and
//! seed, with Δp, the mean relative improvement over hard-sharing equal weighting.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use serde_json::json;

use tapestry_mtl::weighting::{self, MethodOptions};

use crate::config::{method_names, RunConfig, ARCHS};
use crate::error::{CliError, Result};
use crate::invalid;
use crate::output::write_atomic;
use crate::plots::{self, Series};
use crate::run::{fmt_opt, metric_name, pad, train, RunSummary, Start, RUN_FILES};
use crate::rundir::{self, LockedDir};
use crate::say;
use unicode_width::UnicodeWidthStr;

/// Δp of `metrics` against `baseline`, in percent: `(100 / T) Σ_t (−1)^{l_t} (M_t − B_t) / B_t`,
/// where `l_t = 1` when task `t`'s metric is better lower. Tasks whose baseline is 0 or unknown
/// are left out of the mean; `None` if none is left.
pub fn delta_p(
    metrics: &[Option<f64>],
    baseline: &[Option<f64>],
    higher_is_better: &[bool],
) -> Option<f64> {
    let terms: Vec<f64> = metrics
        .iter()
        .zip(baseline)
        .zip(higher_is_better)
        .filter_map(|((m, b), &up)| {
            let (m, b) = ((*m)?, (*b)?);
            (b != 0.0 && m.is_finite() && b.is_finite()).then(|| {
                let r = (m - b) / b;
                if up {
                    r
                } else {
                    -r
                }
            })
        })
        .collect();
    (!terms.is_empty()).then(|| 100.0 * terms.iter().sum::<f64>() / terms.len() as f64)
}

/// Parses `ew,mgda,...`: known names, no repeats; `ew` is added first when missing (it is the
/// baseline of Δp).
pub fn parse_methods(list: &str) -> Result<Vec<String>> {
    let mut methods: Vec<String> = Vec::new();
    let all = method_names().join(",");
    let list = if list.trim().eq_ignore_ascii_case("all") { all.as_str() } else { list };
    for raw in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let m = raw.to_ascii_lowercase();
        if !method_names().contains(&m.as_str()) {
            return Err(invalid!(
                "unknown weighting method `{raw}`; expected one of {}",
                method_names().join(", ")
            ));
        }
        if methods.contains(&m) {
            return Err(invalid!("method `{m}` is listed twice"));
        }
        methods.push(m);
    }
    if methods.is_empty() {
        return Err(invalid!("no method to compare; give for example --methods ew,mgda"));
    }
    // EW runs first: with hard sharing it is the baseline of Δp.
    methods.retain(|m| m != "ew");
    methods.insert(0, "ew".into());
    Ok(methods)
}

/// Parses `hard,soft,...`: known names, no repeats; `hard` is added first when missing (hard
/// sharing with EW is the baseline of Δp).
pub fn parse_archs(list: &str) -> Result<Vec<String>> {
    let mut archs: Vec<String> = Vec::new();
    for raw in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let a = raw.to_ascii_lowercase();
        if !ARCHS.contains(&a.as_str()) {
            return Err(invalid!(
                "unknown architecture `{raw}`; expected one of {}",
                ARCHS.join(", ")
            ));
        }
        if archs.contains(&a) {
            return Err(invalid!("architecture `{a}` is listed twice"));
        }
        archs.push(a);
    }
    if !archs.iter().any(|a| a == "hard") {
        archs.insert(0, "hard".into());
    }
    Ok(archs)
}

/// Why `method` cannot run on `arch`, if it cannot, from what the method needs: the gradient
/// methods need shared parameters (soft sharing has none), the representation methods one
/// representation every task shares (hard sharing only).
fn unsupported(method: &str, arch: &str) -> Option<&'static str> {
    let needs = weighting::by_name(method, &MethodOptions::default()).ok()?.needs();
    if (needs.shared_gradients || needs.shared_gram || needs.layer_gradient_norms) && arch == "soft"
    {
        Some("soft sharing shares no parameter")
    } else if needs.representation_gradients && arch != "hard" {
        Some(match arch {
            "mmoe" | "cgc" | "ple" => "the gates give one representation per task",
            "mtan" => "the attention masks give one representation per task",
            _ => "the towers give one representation per task",
        })
    } else {
        None
    }
}

/// The hyper-parameters of `params` that `method` declares (a compare's `--param` applies to
/// every listed method that takes it).
fn params_of(method: &str, params: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    let declared = weighting::method(method).map_or(&[][..], |m| m.hypers);
    params
        .iter()
        .filter(|(k, _)| declared.iter().any(|h| h.name == *k))
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

/// Checks, before anything trains, that every hyper-parameter of `params` is taken by at least
/// one of `methods` and that each method accepts its values.
pub fn check_params(methods: &[String], params: &BTreeMap<String, f64>) -> Result<()> {
    for m in methods {
        let options = MethodOptions { params: params_of(m, params), ..MethodOptions::default() };
        weighting::by_name(m, &options).map_err(|e| invalid!("{e}"))?;
    }
    for name in params.keys() {
        if !methods.iter().any(|m| params_of(m, params).contains_key(name)) {
            return Err(invalid!(
                "hyper-parameter `{name}` is taken by none of the methods compared ({})",
                methods.join(", ")
            ));
        }
    }
    Ok(())
}

/// Every registered method with its summary and hyper-parameters, as `tapestry methods` prints.
pub fn methods_table() -> String {
    let mut out = String::new();
    for m in weighting::METHODS {
        out.push_str(&format!("{:<12} {}\n", m.name, m.summary));
        for h in m.hypers {
            out.push_str(&format!(
                "{:<12}   --param {}={} (in {}): {}\n",
                "", h.name, h.default, h.range, h.about
            ));
        }
    }
    out
}

/// Why `method` cannot run with `base`'s data and schedule, if it cannot: one input per task
/// gives each task its own representation, and a one-task schedule leaves nothing to weigh.
fn unsupported_by(base: &RunConfig, method: &str) -> Option<&'static str> {
    let needs = weighting::by_name(method, &MethodOptions::default()).ok()?.needs();
    if needs.representation_gradients && !base.multi_input.is_empty() {
        Some("one input per task gives each task its own representation")
    } else if base.schedule != "all" && method != "ew" {
        Some("a one-task schedule leaves nothing to weigh")
    } else {
        None
    }
}

/// Trains each method on each architecture with `base` into `out/<method>` (or
/// `out/<arch>-<method>` when several architectures are compared), prints the table and writes
/// `compare.json` and `tradeoff.svg` (and `.png`). A method that cannot run on an architecture is skipped
/// with a line saying why.
///
/// The results go to `out` as a unit: every method trains into a hidden staging directory,
/// and only once all have finished do they replace what `out` held (the old tables are removed
/// first, so no table is ever beside results it does not describe). A directory holding
/// results is refused unless `force`; a failed or interrupted comparison leaves it untouched.
pub fn compare(
    base: &RunConfig,
    methods: &[String],
    archs: &[String],
    out: &Path,
    quiet: bool,
    force: bool,
) -> Result<String> {
    let found = compare_files(out);
    if !found.is_empty() && !force {
        return Err(rundir::refuse_existing(out, &found, false));
    }
    let dir = LockedDir::open(out)?;
    let found = compare_files(out);
    if !found.is_empty() && !force {
        return Err(rundir::refuse_existing(out, &found, false));
    }
    let staging = out.join(STAGING);
    remove_dir(&staging)?;
    let table = match compare_into(base, methods, archs, &staging, quiet) {
        Ok(table) => table,
        Err(e) => {
            let _ = fs::remove_dir_all(&staging);
            return Err(match e {
                CliError::Interrupted(_) => CliError::Interrupted(format!(
                    "the comparison was stopped; {} is as it was before it",
                    out.display()
                )),
                e => e,
            });
        }
    };
    // The old tables go first: a kill from here on leaves results without a table, never a
    // table beside results it does not describe.
    for name in TABLES.iter().chain(&PLOTS) {
        rundir::remove_files(dir.path(), &[name.to_string()])?;
    }
    for name in &found {
        remove_dir(&out.join(name))?;
    }
    let entries = fs::read_dir(&staging).map_err(|e| CliError::io("read", &staging, e))?;
    let mut names: Vec<String> =
        entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    // The tables move last.
    names.sort_by_key(|n| (TABLES.contains(&n.as_str()), n.clone()));
    for name in names {
        let (from, to) = (staging.join(&name), out.join(&name));
        remove_dir(&to)?;
        fs::rename(&from, &to).map_err(|e| CliError::io("move", &to, e))?;
    }
    remove_dir(&staging)?;
    Ok(table)
}

/// The hidden directory a comparison trains in until it is complete.
const STAGING: &str = ".staging";
/// The tables of a comparison.
const TABLES: [&str; 2] = ["compare.json", "compare.txt"];
/// The plot of a comparison, as SVG and PNG.
const PLOTS: [&str; 2] = ["tradeoff.svg", "tradeoff.png"];

/// What an earlier comparison left in `out`: its tables and plot, and its run directories.
fn compare_files(out: &Path) -> Vec<String> {
    let mut found = rundir::run_files(out, &[TABLES[0], TABLES[1], PLOTS[0], PLOTS[1]]);
    if let Ok(entries) = fs::read_dir(out) {
        let mut runs: Vec<String> = entries
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .filter(|n| !rundir::run_files(&out.join(n), &RUN_FILES).is_empty())
            .collect();
        runs.sort();
        found.extend(runs);
    }
    found
}

/// Removes the directory or file `path`, if there.
fn remove_dir(path: &Path) -> Result<()> {
    let removed = if path.is_dir() { fs::remove_dir_all(path) } else { fs::remove_file(path) };
    match removed {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(CliError::io("remove", path, e)),
        _ => Ok(()),
    }
}

/// [`compare`] into the empty directory `out`.
fn compare_into(
    base: &RunConfig,
    methods: &[String],
    archs: &[String],
    out: &Path,
    quiet: bool,
) -> Result<String> {
    let mut results: Vec<(String, RunSummary)> = Vec::new();
    for arch in archs {
        for method in methods {
            let label = if archs.len() == 1 { method.clone() } else { format!("{arch}-{method}") };
            if let Some(why) = unsupported(method, arch).or_else(|| unsupported_by(base, method)) {
                say!("skipping {method} on {arch}: {why}");
                continue;
            }
            let config = RunConfig {
                method: method.clone(),
                params: params_of(method, &base.params),
                arch: arch.clone(),
                cosines: base.cosines && arch != "soft",
                affinity: base.affinity && arch != "soft",
                ..base.clone()
            }
            .validate()?;
            if !quiet {
                say!("== {label} ==");
            }
            let summary = train(&config, &out.join(&label), quiet, Start::Fresh)?;
            results.push((label, summary));
        }
    }
    let tasks = results[0].1.tasks.clone();
    let up: Vec<bool> = tasks.iter().map(|t| t.metric.higher_is_better()).collect();
    let values =
        |s: &RunSummary| -> Vec<Option<f64>> { s.test.tasks.iter().map(|t| t.value).collect() };
    // hard sharing with EW runs first: the baseline.
    let ew = values(&results[0].1);
    let ew_seconds = results[0].1.train_seconds;

    let mut table = String::new();
    let width = results.iter().map(|(m, _)| m.width()).max().unwrap_or(6).max(6);
    let mut header = pad("method", width);
    // Each task's column is as wide as its heading, at least 18.
    let headings: Vec<String> =
        tasks.iter().map(|t| format!("{} {}", t.name, metric_name(t.metric))).collect();
    let columns: Vec<usize> = headings.iter().map(|h| h.width().max(18)).collect();
    for (h, &w) in headings.iter().zip(&columns) {
        header.push_str(&format!("  {}{h}", " ".repeat(w - h.width())));
    }
    header.push_str(&format!("  {:>9}  {:>9}  {:>6}\n", "Δp (%)", "train s", "× EW"));
    table.push_str(&header);
    let mut rows = Vec::new();
    let mut series = Vec::new();
    for (method, summary) in &results {
        let v = values(summary);
        let dp = delta_p(&v, &ew, &up);
        let mut line = pad(method, width);
        for (x, &w) in v.iter().zip(&columns) {
            line.push_str(&format!("  {:>w$}", fmt_opt(*x)));
        }
        let time_ratio = summary.train_seconds / ew_seconds.max(1e-9);
        line.push_str(&format!(
            "  {:>9}  {:>9.1}  {:>6.2}\n",
            dp.map(|d| format!("{d:+.2}")).unwrap_or_else(|| "-".into()),
            summary.train_seconds,
            time_ratio
        ));
        table.push_str(&line);
        rows.push(json!({
            "method": method,
            "test": v,
            "delta_p_percent": dp,
            "train_seconds": summary.train_seconds,
            "time_vs_ew": time_ratio,
        }));
        // Per-task relative improvement over EW, sign-corrected, in percent.
        let points = (0..tasks.len())
            .filter_map(|i| {
                let d = delta_p(&v[i..=i], &ew[i..=i], &up[i..=i])?;
                Some((i as f64, d))
            })
            .collect();
        series.push(Series { name: method.clone(), points });
    }
    let names: Vec<String> = tasks.iter().map(|t| t.name.clone()).collect();
    let record = json!({
        "tasks": names,
        "metrics": tasks.iter().map(|t| metric_name(t.metric)).collect::<Vec<_>>(),
        "higher_is_better": up,
        "config": serde_json::to_value(base).expect("serialisable"),
        "results": rows,
    });
    write_atomic(&out.join("compare.json"), format!("{record:#}\n").as_bytes())?;
    write_atomic(&out.join("compare.txt"), table.as_bytes())?;
    let title = format!("Per-task improvement over EW (tasks: {})", names.join(", "));
    plots::line_chart(
        &out.join("tradeoff.svg"),
        &title,
        "task index",
        "improvement over EW (%)",
        &series,
    )?;
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delta_p_sign_corrects_lower_is_better_metrics() {
        // Accuracy 0.9 vs 0.8 (+12.5%), RMSE 2.0 vs 2.5 (better by 20%): mean 16.25%.
        let d = delta_p(&[Some(0.9), Some(2.0)], &[Some(0.8), Some(2.5)], &[true, false]).unwrap();
        assert!((d - 16.25).abs() < 1e-9, "{d}");
        assert_eq!(delta_p(&[Some(0.8)], &[Some(0.8)], &[true]), Some(0.0));
        assert_eq!(delta_p(&[None], &[Some(0.8)], &[true]), None);
    }

    #[test]
    fn archs_are_checked_and_hard_added() {
        assert_eq!(parse_archs("soft,cross-stitch").unwrap(), ["hard", "soft", "cross-stitch"]);
        assert!(parse_archs("hard,tree").unwrap_err().to_string().contains("`tree`"));
        assert!(parse_archs("soft,soft").is_err());
        assert_eq!(unsupported("mgda", "soft"), Some("soft sharing shares no parameter"));
        assert_eq!(unsupported("mgda", "cross-stitch"), None);
        assert_eq!(unsupported("mgda", "mmoe"), None);
        assert_eq!(
            unsupported("mgda-ub", "ple"),
            Some("the gates give one representation per task")
        );
        assert_eq!(
            unsupported("graddrop", "mtan"),
            Some("the attention masks give one representation per task")
        );
        assert_eq!(
            parse_archs("mmoe,cgc,ple,mtan").unwrap(),
            ["hard", "mmoe", "cgc", "ple", "mtan"]
        );
    }

    #[test]
    fn methods_are_checked_and_ew_added() {
        assert_eq!(parse_methods("mgda, gradnorm").unwrap(), ["ew", "mgda", "gradnorm"]);
        assert!(parse_methods("ew,foo").unwrap_err().to_string().contains("`foo`"));
        assert!(parse_methods("ew,ew").is_err());
        assert!(parse_methods(" , ").is_err());
    }
}
