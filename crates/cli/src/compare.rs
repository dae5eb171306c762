//! `tapestry compare`: several weighting methods on the same data, model and seed, with Δp, the
//! mean relative improvement over equal weighting.

use std::path::Path;

use serde_json::json;

use crate::config::{RunConfig, METHODS};
use crate::error::Result;
use crate::invalid;
use crate::output::write_atomic;
use crate::plots::{self, Series};
use crate::run::{metric_name, train, RunSummary};

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
    for raw in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let m = raw.to_ascii_lowercase();
        if !METHODS.contains(&m.as_str()) {
            return Err(invalid!(
                "unknown weighting method `{raw}`; expected one of {}",
                METHODS.join(", ")
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
    if !methods.iter().any(|m| m == "ew") {
        methods.insert(0, "ew".into());
    }
    Ok(methods)
}

/// Trains each method with `base` into `out/<method>`, prints the table and writes
/// `compare.json` and `tradeoff.svg`.
pub fn compare(base: &RunConfig, methods: &[String], out: &Path, quiet: bool) -> Result<String> {
    let mut results: Vec<(String, RunSummary)> = Vec::new();
    for method in methods {
        let config = RunConfig { method: method.clone(), ..base.clone() }.validate()?;
        if !quiet {
            println!("== {method} ==");
        }
        let summary = train(&config, &out.join(method), quiet)?;
        results.push((method.clone(), summary));
    }
    let tasks = results[0].1.tasks.clone();
    let up: Vec<bool> = tasks.iter().map(|t| t.metric.higher_is_better()).collect();
    let values =
        |s: &RunSummary| -> Vec<Option<f64>> { s.test.tasks.iter().map(|t| t.value).collect() };
    let ew = values(&results.iter().find(|(m, _)| m == "ew").expect("ew is always run").1);

    let mut table = String::new();
    let mut header = format!("{:<10}", "method");
    for t in &tasks {
        header.push_str(&format!("  {:>18}", format!("{} {}", t.name, metric_name(t.metric))));
    }
    header.push_str(&format!("  {:>9}  {:>9}\n", "Δp (%)", "train s"));
    table.push_str(&header);
    let mut rows = Vec::new();
    let mut series = Vec::new();
    for (method, summary) in &results {
        let v = values(summary);
        let dp = delta_p(&v, &ew, &up);
        let mut line = format!("{method:<10}");
        for x in &v {
            line.push_str(&format!(
                "  {:>18}",
                x.map(|x| format!("{x:.4}")).unwrap_or_else(|| "-".into())
            ));
        }
        line.push_str(&format!(
            "  {:>9}  {:>9.1}\n",
            dp.map(|d| format!("{d:+.2}")).unwrap_or_else(|| "-".into()),
            summary.train_seconds
        ));
        table.push_str(&line);
        rows.push(json!({
            "method": method,
            "test": v,
            "delta_p_percent": dp,
            "train_seconds": summary.train_seconds,
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
    fn methods_are_checked_and_ew_added() {
        assert_eq!(parse_methods("mgda, gradnorm").unwrap(), ["ew", "mgda", "gradnorm"]);
        assert!(parse_methods("ew,foo").unwrap_err().to_string().contains("`foo`"));
        assert!(parse_methods("ew,ew").is_err());
        assert!(parse_methods(" , ").is_err());
    }
}
