//! How the app starts: which runs, which tab, started or not. Read from the environment
//! natively (`NNLAB_RUNS=resnet20,resnet20-plain NNLAB_AUTOSTART=1`) and from the page URL in
//! the browser (`?runs=resnet20,resnet20-plain&autostart`), by the same parser.

use super::run::RunSettings;
use super::views::Tab;
use crate::app::data::DataChoice;
use crate::data::Bundled;

/// How the app starts.
#[derive(Clone, Debug, Default)]
pub struct Launch {
    /// Start the runs at once.
    pub autostart: bool,
    /// The tab to open.
    pub tab: Option<Tab>,
    /// The study view to open (and the Study tab with it).
    pub study: Option<super::views::study::StudyTab>,
    /// One run per model name (default: one MNIST CNN; on the GAN tab one DCGAN).
    pub runs: Vec<String>,
    /// Batch size of the runs.
    pub batch: Option<usize>,
    /// Validation interval in steps.
    pub val_every: Option<u64>,
    /// Optimizer (`sgd`, `adam`).
    pub opt: Option<String>,
    /// Learning rate.
    pub lr: Option<f32>,
    /// Bundled data set.
    pub data: Option<Bundled>,
    /// The side image folders are converted to (as `nnlab train --image-size`).
    pub image_size: Option<usize>,
    /// A validation image to open in the Mistakes tab's saliency panel.
    pub explain: Option<usize>,
    /// `export=onnx`: save the first run as ONNX at once (a download in the browser).
    pub export_onnx: bool,
    /// `webcam`: classify the camera's frames in the Classify tab (browser).
    pub webcam: bool,
    /// `lose_device_after`: destroy the device once a run has this many steps back, as a
    /// driver reset would (fault injection, to try the restart on a new device).
    pub lose_device_after: Option<u64>,
    /// Save a screenshot here once this many steps are back and feature maps are shown,
    /// then close (native; used by scripts/app-screenshot).
    pub screenshot: Option<(std::path::PathBuf, u64)>,
}

impl Launch {
    /// Parses the settings `get` finds by key (`runs`, `model`, `tab`, `study`, `autostart`, `batch`,
    /// `val_every`, `opt`, `lr`, `data`, `image_size`, `explain`, `export`, `webcam`,
    /// `lose_device_after`, `screenshot`, `screenshot_steps`).
    pub fn parse(get: impl Fn(&str) -> Option<String>) -> Self {
        let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let mut runs: Vec<String> = get("runs")
            .map(|r| {
                r.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        if runs.is_empty()
            && let Some(m) = get("model")
        {
            runs.push(m);
        }
        let steps = get("screenshot_steps")
            .and_then(|v| v.parse().ok())
            .unwrap_or(30);
        Self {
            autostart: get("autostart").is_some_and(|v| v != "0"),
            tab: get("tab").and_then(|t| Tab::from_name(&t)),
            study: get("study").and_then(|t| super::views::study::StudyTab::from_name(&t)),
            runs,
            batch: get("batch").and_then(|b| b.parse().ok()),
            val_every: get("val_every").and_then(|b| b.parse().ok()),
            opt: get("opt").map(|o| o.to_ascii_lowercase()),
            lr: get("lr").and_then(|v| v.parse().ok()),
            data: get("data").and_then(|d| Bundled::from_name(&d)),
            image_size: get("image_size").and_then(|v| v.parse().ok()),
            screenshot: get("screenshot").map(|p| (p.into(), steps)),
            explain: get("explain").and_then(|v| v.parse().ok()),
            export_onnx: get("export").is_some_and(|v| v.eq_ignore_ascii_case("onnx")),
            webcam: get("webcam").is_some_and(|v| v != "0"),
            lose_device_after: get("lose_device_after").and_then(|v| v.parse().ok()),
        }
    }

    /// Reads `NNLAB_RUNS`, `NNLAB_MODEL`, `NNLAB_TAB`, `NNLAB_STUDY`, `NNLAB_AUTOSTART`, `NNLAB_BATCH`,
    /// `NNLAB_VAL_EVERY`, `NNLAB_OPT`, `NNLAB_LR`, `NNLAB_DATA`, `NNLAB_IMAGE_SIZE`,
    /// `NNLAB_EXPLAIN`, `NNLAB_EXPORT`, `NNLAB_LOSE_DEVICE_AFTER`,
    /// `NNLAB_SCREENSHOT` and `NNLAB_SCREENSHOT_STEPS` (native).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_env() -> Self {
        Self::parse(|k| std::env::var(format!("NNLAB_{}", k.to_ascii_uppercase())).ok())
    }

    /// Reads the page URL's query (`?runs=...&autostart`); a flag without a value is on.
    #[cfg(target_arch = "wasm32")]
    pub fn from_url() -> Self {
        let search = web_sys::window()
            .and_then(|w| w.location().search().ok())
            .unwrap_or_default();
        let Ok(params) = web_sys::UrlSearchParams::new_with_str(&search) else {
            return Self::default();
        };
        Self::parse(|k| {
            params
                .get(k)
                .map(|v| if v.is_empty() { "1".into() } else { v })
        })
    }

    /// The settings of each run to create at start.
    pub fn run_settings(&self) -> Vec<RunSettings> {
        let names = if !self.runs.is_empty() {
            self.runs.clone()
        } else if self.tab == Some(Tab::Gan) {
            vec!["dcgan".to_string()]
        } else {
            vec!["mnist-cnn".to_string()]
        };
        names
            .iter()
            .map(|m| {
                let mut s = RunSettings::for_model(m);
                if let Some(b) = self.batch {
                    s.batch = b.max(1);
                }
                if let Some(v) = self.val_every {
                    s.val_every = v;
                }
                if let Some(o) = self.opt.as_ref().filter(|o| *o == "sgd" || *o == "adam") {
                    s.opt = o.clone();
                }
                if let Some(lr) = self.lr.filter(|lr| lr.is_finite() && *lr > 0.0) {
                    s.lr = lr;
                }
                if let Some(d) = self.data {
                    s.data = DataChoice::bundled(d);
                }
                s
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_and_flags_parse_from_key_value_pairs() {
        let l = Launch::parse(|k| match k {
            "runs" => Some("resnet20, resnet20-plain,".into()),
            "autostart" => Some("1".into()),
            "batch" => Some("16".into()),
            "tab" => Some("gan".into()),
            _ => None,
        });
        assert!(l.autostart);
        assert_eq!(l.runs, vec!["resnet20", "resnet20-plain"]);
        assert_eq!(l.tab, Some(Tab::Gan));
        let s = l.run_settings();
        assert_eq!(s.len(), 2);
        assert!(s.iter().all(|s| s.batch == 16));
        assert_eq!(s[1].model, "resnet20-plain");
        // Nothing given: one MNIST CNN, not started; the GAN tab alone: one DCGAN.
        let none = Launch::parse(|_| None);
        assert!(!none.autostart);
        assert_eq!(none.run_settings()[0].model, "mnist-cnn");
        let gan = Launch::parse(|k| (k == "tab").then(|| "gan".to_string()));
        assert_eq!(gan.run_settings()[0].model, "dcgan");
        // "autostart=0" is off.
        let off = Launch::parse(|k| (k == "autostart").then(|| "0".to_string()));
        assert!(!off.autostart);
    }
}
