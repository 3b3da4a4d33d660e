//! The plot of each study, drawn from the JSON it prints (so the plot shows exactly what
//! the numbers say).

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::plot::{Chart, Heatmap, Series, write_chart, write_chart_and_heatmaps};

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or("?").to_string()
}

fn items<'a>(v: &'a Value, key: &str) -> Result<&'a Vec<Value>> {
    v[key]
        .as_array()
        .with_context(|| format!("no {key} in the result"))
}

/// One series per element of `rows[key]`, x = index, y = `field`.
fn by_index(rows: &[Value], field: &str) -> Vec<(f64, f64)> {
    rows.iter()
        .enumerate()
        .map(|(i, r)| (i as f64, num(&r[field])))
        .collect()
}

fn line(name: String, points: Vec<(f64, f64)>, colour: usize, dashed: bool) -> Series {
    Series {
        name,
        points,
        dashed,
        colour,
    }
}

/// Draws the study result `out` to `path`.
pub fn plot(out: &Value, path: &Path) -> Result<()> {
    let chart = |title: String, x: &str, y: &str, log_y: bool, series| Chart {
        title,
        x_label: x.into(),
        y_label: y.into(),
        log_y,
        series,
    };
    match out["study"].as_str() {
        Some("gradients") => {
            let series = items(out, "runs")?
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let layers = r["layers"].as_array().map(Vec::as_slice).unwrap_or(&[]);
                    line(
                        format!("seed {}", r["seed"]),
                        by_index(layers, "grad_norm"),
                        i,
                        false,
                    )
                })
                .collect();
            let bn = if out["batch_norm"] == true {
                "batch norm"
            } else {
                "no batch norm"
            };
            let init = if out["he_init"] == true {
                "He init"
            } else {
                "PyTorch init"
            };
            let title = format!(
                "{}, {bn}, {init}: gradient norm at init",
                text(&out["model"])
            );
            write_chart(
                path,
                &chart(title, "layer (input to output)", "||grad W||", true, series),
            )
        }
        Some("lesion") => {
            let blocks = items(out, "blocks")?;
            let series = vec![line(
                "delta accuracy".into(),
                by_index(blocks, "delta"),
                0,
                false,
            )];
            let title = format!(
                "{}: one block deleted (baseline {:.3})",
                text(&out["model"]),
                num(&out["accuracy"])
            );
            write_chart(
                path,
                &chart(title, "deleted block", "delta accuracy", false, series),
            )
        }
        Some("branches") => {
            let modules = items(out, "modules")?;
            let width = modules
                .iter()
                .filter_map(|m| m["branches"].as_array().map(Vec::len))
                .max()
                .unwrap_or(0);
            let series = (0..width)
                .map(|b| {
                    let pts = modules
                        .iter()
                        .enumerate()
                        .map(|(i, m)| (i as f64, num(&m["branches"][b]["energy_share"])))
                        .collect();
                    line(format!("branch {}", b + 1), pts, b, false)
                })
                .collect();
            let title = format!("{}: branch energy shares", text(&out["model"]));
            write_chart(
                path,
                &chart(title, "Inception module", "share of energy", false, series),
            )
        }
        Some("degradation") => {
            let mut series = Vec::new();
            for (i, r) in items(out, "runs")?.iter().enumerate() {
                let epochs = r["epochs"].as_array().map(Vec::as_slice).unwrap_or(&[]);
                let pts = |f: &str| {
                    epochs
                        .iter()
                        .map(|e| (num(&e["epoch"]), num(&e[f])))
                        .collect()
                };
                let m = text(&r["model"]);
                series.push(line(format!("{m} train"), pts("train_error"), i, false));
                series.push(line(format!("{m} val"), pts("val_error"), i, true));
            }
            let title = format!("degradation, width {}", out["width"]);
            write_chart(path, &chart(title, "epoch", "error", false, series))
        }
        Some("response") => {
            let series = items(out, "runs")?
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let b = r["blocks"].as_array().map(Vec::as_slice).unwrap_or(&[]);
                    line(text(&r["model"]), by_index(b, "branch_std"), i, false)
                })
                .collect();
            write_chart(
                path,
                &chart(
                    "residual responses (branch std before the add)".into(),
                    "block",
                    "std",
                    false,
                    series,
                ),
            )
        }
        Some("landscape") => {
            let runs = items(out, "runs")?;
            let mut series = Vec::new();
            let mut maps = Vec::new();
            for (i, r) in runs.iter().enumerate() {
                let m = text(&r["model"]);
                let pts = r["line"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or(&[])
                    .iter()
                    .map(|p| (num(&p["t"]), num(&p["loss"])))
                    .collect();
                series.push(line(m.clone(), pts, i, false));
                let xs: Vec<f64> = r["alphas"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or(&[])
                    .iter()
                    .map(num)
                    .collect();
                let values = r["grid"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or(&[])
                    .iter()
                    .map(num)
                    .collect();
                maps.push(Heatmap {
                    title: format!("{m}: loss on the plane, log colours"),
                    ys: xs.clone(),
                    xs,
                    values,
                });
            }
            let c = chart(
                "loss from initial (t=0) to trained (t=1)".into(),
                "t",
                "loss",
                true,
                series,
            );
            write_chart_and_heatmaps(path, &c, &maps)
        }
        other => bail!("no plot for the study {other:?}"),
    }
}
