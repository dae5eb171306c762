//! `tapestry report RUN [RUN ...]`: one self-contained HTML page of a run or a comparison.
//!
//! The page holds everything inline, so it opens from a mail or a USB stick: a summary of each
//! run (data set, model, architecture, method, parameters, epochs, training time), for several
//! runs a comparison of the final test metrics with Δp against the first run, each run's
//! per-epoch table (train and test loss, test metric), its plots (the SVGs `train` wrote, inlined
//! as markup) and its configuration. A `compare` directory stands for its runs, baseline first,
//! with its trade-off plot. Everything is read from what the runs wrote (`metrics.jsonl`,
//! `config.toml`, `*.svg`); nothing is retrained.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::compare::delta_p;
use crate::error::{CliError, Result};
use crate::invalid;
use crate::output::write_atomic;
use crate::run::{fmt_opt, CONFIG_FILE, METRICS_FILE};

/// The report's file name.
pub const REPORT_FILE: &str = "report.html";

/// The plots in the order the page shows them; others follow in name order.
const PLOT_ORDER: [&str; 7] = [
    "loss.svg",
    "metrics.svg",
    "weights.svg",
    "cosines.svg",
    "cosines_over_time.svg",
    "affinity.svg",
    "task_relation.svg",
];

/// A plot: its file name and its SVG markup.
type Plot = (String, String);

/// One run, as its directory holds it.
struct RunLog {
    dir: PathBuf,
    label: String,
    /// The log's `run` record.
    run: Value,
    /// The `epoch` records, in order (a resumed epoch once, its last record).
    epochs: Vec<Value>,
    config: Option<String>,
    plots: Vec<Plot>,
}

impl RunLog {
    fn read(dir: &Path, label: String) -> Result<Self> {
        let path = dir.join(METRICS_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| CliError::io("read", &path, e))?;
        let mut run = None;
        let mut epochs: Vec<Value> = Vec::new();
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let record: Value = serde_json::from_str(line).map_err(|e| {
                invalid!("{} line {}: not a JSON record ({e})", path.display(), i + 1)
            })?;
            match record["kind"].as_str() {
                Some("run") if run.is_none() => run = Some(record),
                Some("epoch") => {
                    let epoch = record["epoch"].as_u64();
                    epochs.retain(|e| e["epoch"].as_u64() != epoch);
                    epochs.push(record);
                }
                _ => {}
            }
        }
        let run = run.ok_or_else(|| {
            invalid!("{} holds no `run` record, so it is not a training log", path.display())
        })?;
        if !run["tasks"].is_array() {
            return Err(invalid!(
                "{} is not the log of a `tapestry train` run (its run record names no tasks; a meta-training run has none)",
                path.display()
            ));
        }
        let config = std::fs::read_to_string(dir.join(CONFIG_FILE)).ok();
        Ok(RunLog { dir: dir.to_path_buf(), label, run, epochs, config, plots: svgs(dir)? })
    }

    fn tasks(&self) -> Vec<String> {
        strings(&self.run["tasks"])
    }

    /// The last epoch's test metric of each task.
    fn final_metrics(&self) -> Vec<Option<f64>> {
        let Some(last) = self.epochs.last() else { return vec![None; self.tasks().len()] };
        last["test"]
            .as_array()
            .map_or_else(Vec::new, |t| t.iter().map(|task| task["value"].as_f64()).collect())
    }

    fn train_seconds(&self) -> f64 {
        self.epochs.iter().filter_map(|e| e["seconds"].as_f64()).sum()
    }

    fn config_value(&self, key: &str) -> String {
        match &self.run["config"][key] {
            Value::String(s) => s.clone(),
            Value::Null => "-".into(),
            other => other.to_string(),
        }
    }
}

/// The SVG plots in `dir`, in [`PLOT_ORDER`], then by name.
fn svgs(dir: &Path) -> Result<Vec<Plot>> {
    let entries = std::fs::read_dir(dir).map_err(|e| CliError::io("read", dir, e))?;
    let mut names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".svg"))
        .collect();
    let rank = |n: &String| PLOT_ORDER.iter().position(|p| p == n).unwrap_or(PLOT_ORDER.len());
    names.sort_by(|a, b| rank(a).cmp(&rank(b)).then(a.cmp(b)));
    names
        .into_iter()
        .map(|name| {
            let path = dir.join(&name);
            let text =
                std::fs::read_to_string(&path).map_err(|e| CliError::io("read", &path, e))?;
            // Inline markup starts at the element; an XML declaration has no place in HTML.
            let start = text.find("<svg").ok_or_else(|| {
                invalid!("{} is not an SVG image (no <svg> element)", path.display())
            })?;
            Ok((name, text[start..].to_string()))
        })
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().map(|s| s.as_str().unwrap_or("?").to_string()).collect())
        .unwrap_or_default()
}

/// `text` with HTML's special characters escaped.
fn esc(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The runs `paths` stand for: a run directory itself, a `compare` directory its runs in the
/// order of `compare.json` (the baseline first).
fn expand(paths: &[PathBuf]) -> Result<(Vec<RunLog>, Vec<Plot>)> {
    let mut runs = Vec::new();
    let mut extra_plots = Vec::new();
    for path in paths {
        if !path.is_dir() {
            return Err(invalid!("{} is not a run directory", path.display()));
        }
        let name = path
            .file_name()
            .map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
        if path.join(METRICS_FILE).is_file() {
            runs.push(RunLog::read(path, name)?);
            continue;
        }
        let compare = path.join("compare.json");
        if !compare.is_file() {
            return Err(invalid!(
                "{} holds neither {METRICS_FILE} (a run) nor compare.json (a comparison)",
                path.display()
            ));
        }
        let text =
            std::fs::read_to_string(&compare).map_err(|e| CliError::io("read", &compare, e))?;
        let record: Value = serde_json::from_str(&text)
            .map_err(|e| invalid!("{}: not a comparison record ({e})", compare.display()))?;
        let labels: Vec<String> = record["results"]
            .as_array()
            .map(|r| r.iter().filter_map(|m| m["method"].as_str().map(String::from)).collect())
            .unwrap_or_default();
        if labels.is_empty() {
            return Err(invalid!("{} lists no results", compare.display()));
        }
        for label in labels {
            runs.push(RunLog::read(&path.join(&label), format!("{name}/{label}"))?);
        }
        extra_plots.extend(svgs(path)?.into_iter().map(|(n, svg)| (format!("{name}/{n}"), svg)));
    }
    Ok((runs, extra_plots))
}

/// Writes the report of `paths` to `out` (default: `report.html` in the run or comparison
/// directory when one is given, in the current directory for several) and returns its path.
///
/// # Errors
/// If a path is neither a run nor a comparison directory, a log cannot be read or parsed, the
/// runs have different tasks (they cannot be compared), or the page cannot be written.
pub fn report(paths: &[PathBuf], out: Option<&Path>) -> Result<PathBuf> {
    let (runs, extra_plots) = expand(paths)?;
    let tasks = runs[0].tasks();
    if let Some(other) = runs.iter().find(|r| r.tasks() != tasks) {
        return Err(invalid!(
            "{} has tasks {:?} and {} has {:?}, so one report cannot compare them",
            runs[0].dir.display(),
            tasks,
            other.dir.display(),
            other.tasks()
        ));
    }
    let out = match out {
        Some(p) => p.to_path_buf(),
        None if paths.len() == 1 => paths[0].join(REPORT_FILE),
        None => PathBuf::from(REPORT_FILE),
    };
    if out.is_dir() {
        return Err(invalid!("{} is a directory; give the report's file name", out.display()));
    }
    write_atomic(&out, page(&runs, &extra_plots).as_bytes())?;
    Ok(out)
}

/// The HTML page.
fn page(runs: &[RunLog], extra_plots: &[Plot]) -> String {
    let mut h = String::new();
    let title = if runs.len() == 1 {
        format!("Tapestry run {}", runs[0].label)
    } else {
        format!("Tapestry comparison of {} runs", runs.len())
    };
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>\n\
         body {{ font-family: sans-serif; margin: 2em auto; max-width: 1000px; color: #222; }}\n\
         table {{ border-collapse: collapse; margin: 1em 0; }}\n\
         th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }}\n\
         th:first-child, td:first-child {{ text-align: left; }}\n\
         th {{ background: #f0f0f0; }}\n\
         figure {{ margin: 1em 0; }} figure svg {{ max-width: 100%; height: auto; }}\n\
         figcaption {{ color: #666; font-size: 0.9em; }}\n\
         pre {{ background: #f7f7f7; padding: 0.8em; overflow-x: auto; }}\n\
         .better {{ color: #1a7f37; }} .worse {{ color: #b42318; }}\n\
         </style>\n</head>\n<body>\n<h1>{}</h1>\n",
        esc(&title),
        esc(&title)
    );
    summary_table(&mut h, runs);
    if runs.len() > 1 {
        comparison_table(&mut h, runs);
    }
    for (name, svg) in extra_plots {
        figure(&mut h, name, svg);
    }
    for run in runs {
        let _ = writeln!(h, "<h2 id=\"{0}\">{0}</h2>", esc(&run.label));
        epoch_table(&mut h, run);
        for (name, svg) in &run.plots {
            figure(&mut h, name, svg);
        }
        if let Some(config) = &run.config {
            let _ = writeln!(
                h,
                "<details><summary>Configuration ({CONFIG_FILE})</summary>\n<pre>{}</pre></details>",
                esc(config)
            );
        }
    }
    h.push_str("</body>\n</html>\n");
    h
}

fn figure(h: &mut String, name: &str, svg: &str) {
    let _ = writeln!(h, "<figure>\n{svg}\n<figcaption>{}</figcaption>\n</figure>", esc(name));
}

fn summary_table(h: &mut String, runs: &[RunLog]) {
    h.push_str("<table>\n<tr><th>run</th><th>data set</th><th>model</th><th>architecture</th><th>method</th><th>parameters</th><th>epochs</th><th>training s</th></tr>\n");
    for run in runs {
        let _ = writeln!(
            h,
            "<tr><td><a href=\"#{0}\">{0}</a></td><td>{1}</td><td>{2}</td><td>{3}</td><td>{4}</td><td>{5}</td><td>{6}</td><td>{7:.1}</td></tr>",
            esc(&run.label),
            esc(&run.config_value("dataset")),
            esc(run.run["model"].as_str().unwrap_or("-")),
            esc(&run.config_value("arch")),
            esc(&run.config_value("method")),
            run.run["parameters"].as_u64().map_or_else(|| "-".into(), |p| p.to_string()),
            run.epochs.len(),
            run.train_seconds()
        );
    }
    h.push_str("</table>\n");
}

/// Final test metrics per task and Δp against the first run.
fn comparison_table(h: &mut String, runs: &[RunLog]) {
    let base = &runs[0];
    let tasks = base.tasks();
    let metrics = strings(&base.run["metrics"]);
    let up: Vec<bool> = base.run["higher_is_better"]
        .as_array()
        .map(|a| a.iter().map(|v| v.as_bool().unwrap_or(true)).collect())
        .unwrap_or_else(|| vec![true; tasks.len()]);
    let _ = writeln!(
        h,
        "<h2>Comparison</h2>\n<p>Final test metrics; Δp is the mean relative improvement over <b>{}</b>, sign-corrected for metrics where lower is better: (100 / T) Σ_t (−1)<sup>l_t</sup> (M_t − B_t) / B_t.</p>",
        esc(&base.label)
    );
    h.push_str("<table>\n<tr><th>run</th>");
    for (i, (t, m)) in tasks.iter().zip(&metrics).enumerate() {
        let arrow = if up.get(i) == Some(&false) { "↓" } else { "↑" };
        let _ = write!(h, "<th>{} {} {arrow}</th>", esc(t), esc(m));
    }
    h.push_str("<th>Δp (%)</th><th>training s</th><th>× first</th></tr>\n");
    let baseline = base.final_metrics();
    let base_seconds = base.train_seconds();
    for run in runs {
        let values = run.final_metrics();
        let dp = delta_p(&values, &baseline, &up);
        let class = match dp {
            Some(d) if d > 0.0 => " class=\"better\"",
            Some(d) if d < 0.0 => " class=\"worse\"",
            _ => "",
        };
        let _ = write!(h, "<tr><td><a href=\"#{0}\">{0}</a></td>", esc(&run.label));
        for v in &values {
            let _ = write!(h, "<td>{}</td>", fmt_opt(*v));
        }
        let ratio = if base_seconds > 0.0 { run.train_seconds() / base_seconds } else { f64::NAN };
        let _ = writeln!(
            h,
            "<td{class}>{}</td><td>{:.1}</td><td>{:.2}</td></tr>",
            dp.map_or_else(|| "-".into(), |d| format!("{d:+.2}")),
            run.train_seconds(),
            ratio
        );
    }
    h.push_str("</table>\n");
}

fn epoch_table(h: &mut String, run: &RunLog) {
    let tasks = run.tasks();
    let metrics = strings(&run.run["metrics"]);
    h.push_str("<table>\n<tr><th>epoch</th><th>s</th>");
    for (t, m) in tasks.iter().zip(&metrics) {
        let _ = write!(
            h,
            "<th>{0} train loss</th><th>{0} test loss</th><th>{0} {1}</th>",
            esc(t),
            esc(m)
        );
    }
    h.push_str("</tr>\n");
    for e in &run.epochs {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{:.2}</td>",
            e["epoch"].as_u64().map_or(0, |n| n + 1),
            e["seconds"].as_f64().unwrap_or(f64::NAN)
        );
        let cell = |split: &str, t: usize, key: &str| fmt_opt(e[split][t][key].as_f64());
        for t in 0..tasks.len() {
            let _ = write!(
                h,
                "<td>{}</td><td>{}</td><td>{}</td>",
                cell("train", t, "loss"),
                cell("test", t, "loss"),
                cell("test", t, "value")
            );
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_keeps_markup_out_of_text() {
        assert_eq!(esc("a<b & \"c\">"), "a&lt;b &amp; &quot;c&quot;&gt;");
    }
}
