//! The lesion board (Veit et al. 2016): delete one block at test time, or several at
//! random, and measure the validation accuracy; residual nets and their plain twins side
//! by side.

use std::collections::{BTreeMap, VecDeque};

use anyhow::Result;
use egui_plot::{Bar, BarChart, Legend, Line, Plot, PlotPoints};
use gpu_nn::init::SeedRng;

use super::info;
use crate::app::lab::{Lab, color};
use crate::core::study::{BlockInfo, blocks};
use crate::core::{EVAL_BATCH, Evaluation};

const INFO: &str = "For a trained run (paused while measured): the validation accuracy with \
each block deleted at test time, one at a time (a residual block then outputs \
relu(shortcut): its branch F(x) counts as zero; a plain block passes its input on, and one \
that changes the shape cannot be deleted), and with k blocks deleted at random (three random \
sets per k, averaged).\n\
Look for: in a ResNet most single deletions cost little, the downsampling blocks (where the \
shortcut is a projection) more, and accuracy falls smoothly as more blocks go: the network \
behaves like an ensemble of paths of many lengths. In the plain twin one deletion already \
collapses accuracy towards chance. Reproduces Veit, Wilber and Belongie 2016, 'Residual \
Networks Behave Like Ensembles of Relatively Shallow Networks', Figs. 3 and 5.";

/// One evaluation of a study.
#[derive(Clone, Debug)]
enum Job {
    Baseline,
    Single(usize),
    Random(usize, Vec<String>),
}

/// A lesion study of one run.
struct Study {
    name: String,
    step: u64,
    residual: bool,
    blocks: Vec<BlockInfo>,
    baseline: Option<f64>,
    single: Vec<Option<f64>>,
    random: BTreeMap<usize, Vec<f64>>,
    queue: VecDeque<Job>,
    pending: Option<(Job, Evaluation)>,
    done: usize,
    total: usize,
}

/// The view's state: a study per run.
#[derive(Default)]
pub struct LesionsView {
    studies: BTreeMap<u64, Study>,
    /// Why the last study could not start.
    pub error: Option<String>,
}

impl LesionsView {
    /// Starts a study of run `id` (pausing it: the weights must not move meanwhile).
    pub fn measure(&mut self, lab: &mut Lab, id: u64) {
        let Some(run) = lab.get_mut(id) else { return };
        let Some(c) = run.classifier() else { return };
        let found = blocks(c.net.as_ref());
        if found.is_empty() {
            self.error = Some(format!("{} has no residual or plain blocks", run.name));
            return;
        }
        run.running = false;
        let residual = !run.settings.model.ends_with("-plain");
        let deletable: Vec<String> = found
            .iter()
            .filter(|b| residual || !b.downsamples)
            .map(|b| b.path.clone())
            .collect();
        let mut queue: VecDeque<Job> = VecDeque::new();
        queue.push_back(Job::Baseline);
        queue.extend((0..found.len()).map(Job::Single));
        let mut rng = SeedRng::new(7);
        for k in 2..=deletable.len() {
            for _ in 0..3 {
                let mut order = deletable.clone();
                rng.shuffle(&mut order);
                order.truncate(k);
                queue.push_back(Job::Random(k, order));
            }
        }
        let total = queue.len();
        self.studies.insert(
            id,
            Study {
                name: run.name.clone(),
                step: run.steps(),
                residual,
                single: vec![None; found.len()],
                blocks: found,
                baseline: None,
                random: BTreeMap::new(),
                queue,
                pending: None,
                done: 0,
                total,
            },
        );
        self.error = None;
    }

    /// Collects finished evaluations and submits the next ones (never waits).
    pub fn advance(&mut self, lab: &mut Lab) -> Result<()> {
        self.studies.retain(|id, _| lab.get(*id).is_some());
        for (id, s) in &mut self.studies {
            let Some(run) = lab.get(*id) else { continue };
            let Some(c) = run.classifier() else { continue };
            if let Some((job, e)) = &mut s.pending
                && let Some(r) = e.try_take()?
            {
                match job {
                    Job::Baseline => s.baseline = Some(r.acc),
                    Job::Single(i) => s.single[*i] = Some(r.acc),
                    Job::Random(k, _) => s.random.entry(*k).or_default().push(r.acc),
                }
                s.pending = None;
                s.done += 1;
            }
            if s.pending.is_none()
                && let Some(job) = s.queue.pop_front()
            {
                let lesions = match &job {
                    Job::Baseline => Vec::new(),
                    Job::Single(i) => {
                        let b = &s.blocks[*i];
                        if !s.residual && b.downsamples {
                            s.done += 1;
                            continue;
                        }
                        vec![b.path.clone()]
                    }
                    Job::Random(_, l) => l.clone(),
                };
                let e = Evaluation::start_lesioned(
                    c.gpu(),
                    c.net.as_ref(),
                    &run.data.val,
                    EVAL_BATCH,
                    s.step,
                    &lesions,
                )?;
                s.pending = Some((job, e));
            }
        }
        Ok(())
    }

    /// True while a study has evaluations left.
    pub fn busy(&self) -> bool {
        self.studies
            .values()
            .any(|s| s.pending.is_some() || !s.queue.is_empty())
    }

    /// Draws a Measure button per ResNet-style run and both plots.
    pub fn ui(&mut self, ui: &mut egui::Ui, lab: &mut Lab) {
        info(ui, "lesions", INFO);
        let candidates: Vec<(u64, String)> = lab
            .runs
            .iter()
            .filter(|r| {
                r.classifier()
                    .is_some_and(|c| !blocks(c.net.as_ref()).is_empty())
            })
            .map(|r| (r.id, r.name.clone()))
            .collect();
        if candidates.is_empty() {
            ui.label(
                "No ResNet-style run: add resnet20 and resnet20-plain, train them, then measure.",
            );
            return;
        }
        ui.horizontal_wrapped(|ui| {
            for (id, name) in &candidates {
                if ui
                    .button(format!("Measure {name}"))
                    .on_hover_text("Pauses the run and evaluates it with blocks deleted")
                    .clicked()
                {
                    self.measure(lab, *id);
                }
            }
        });
        if let Some(e) = &self.error {
            ui.colored_label(egui::Color32::LIGHT_RED, e);
        }
        for s in self.studies.values() {
            if s.done < s.total {
                ui.add(
                    egui::ProgressBar::new(s.done as f32 / s.total as f32)
                        .text(format!("{}: {}/{}", s.name, s.done, s.total)),
                );
            }
        }
        let n = self.studies.len().max(1) as f64;
        let mut bars = Vec::new();
        let mut lines = Vec::new();
        let mut labels = Vec::new();
        for (k, (id, s)) in self.studies.iter().enumerate() {
            let Some(base) = s.baseline else { continue };
            let b: Vec<Bar> = s
                .single
                .iter()
                .enumerate()
                .filter_map(|(i, a)| {
                    a.map(|a| {
                        Bar::new(i as f64 + k as f64 * 0.8 / n, 100.0 * (a - base))
                            .width(0.8 / n)
                            .name(&s.blocks[i].path)
                    })
                })
                .collect();
            bars.push(BarChart::new(format!("{} (step {})", s.name, s.step), b).color(color(*id)));
            let mut pts = vec![[0.0, 100.0 * base]];
            pts.extend(
                s.random
                    .iter()
                    .map(|(k, v)| [*k as f64, 100.0 * v.iter().sum::<f64>() / v.len() as f64]),
            );
            lines.push(Line::new(s.name.clone(), PlotPoints::from(pts)).color(color(*id)));
            if labels.len() < s.blocks.len() {
                labels = s
                    .blocks
                    .iter()
                    .map(|b| {
                        if b.downsamples {
                            format!("{}*", b.path)
                        } else {
                            b.path.clone()
                        }
                    })
                    .collect();
            }
        }
        if bars.is_empty() {
            return;
        }
        let half = (ui.available_height() / 2.0 - 24.0).max(120.0);
        ui.label(format!(
            "change in validation accuracy (points) with one block deleted; * downsamples: {}",
            labels.join(" ")
        ));
        Plot::new("lesion-single")
            .legend(Legend::default())
            .height(half)
            .x_axis_label("block")
            .show(ui, |p| {
                for b in bars {
                    p.bar_chart(b);
                }
            });
        ui.label("validation accuracy (%) with k blocks deleted at random (mean of 3 sets)");
        Plot::new("lesion-random")
            .legend(Legend::default())
            .height(half)
            .x_axis_label("blocks deleted")
            .include_y(0.0)
            .show(ui, |p| {
                for l in lines {
                    p.line(l);
                }
            });
    }
}
