//! Surviving a lost device (a driver reset, the browser's GPU process killed): every run
//! keeps a recent copy of its weights and optimizer state in host memory, its recovery
//! point, read back without blocking every [`RECOVERY_EVERY_S`]. When the device is lost,
//! the app hands its runs' host side (settings, data, curves, recovery points) to a new app
//! on a new device, which continues each run from its point.

use std::collections::HashMap;
use std::sync::Arc;

use gpu_nn::Gpu;

use super::NnlabApp;
use super::data::Data;
use super::history::History;
use super::launch::Launch;
use super::run::{Run, RunSettings};
use super::views::Tab;
use crate::checkpoint::Checkpoint;
use crate::core::PendingCheckpoint;

/// Seconds between two recovery points of a run: what a device loss can cost.
pub const RECOVERY_EVERY_S: f64 = 30.0;

/// Restarts after which a device lost again is not restarted any more (a driver that
/// keeps failing would otherwise restart the app for ever).
pub const MAX_RESTARTS: u32 = 3;

/// What the app does with its runs when the device is lost: start a new app, on a new
/// device, that continues them (the native window loop and the browser page each have
/// theirs).
pub type Restart = Box<dyn Fn(Recovery)>;

/// Each run's latest recovery point, and those on their way back.
pub struct RecoveryPoints {
    /// Seconds between two points of a run.
    pub every_s: f64,
    /// (steps, checkpoint) by run.
    points: HashMap<u64, (u64, Checkpoint)>,
    pending: HashMap<u64, (u64, PendingCheckpoint)>,
    started_at: HashMap<u64, f64>,
}

impl Default for RecoveryPoints {
    fn default() -> Self {
        Self {
            every_s: RECOVERY_EVERY_S,
            points: HashMap::new(),
            pending: HashMap::new(),
            started_at: HashMap::new(),
        }
    }
}

impl RecoveryPoints {
    /// Collects the points that came back, then starts one for each run that stepped since
    /// its last and whose last is at least `every_s` old. Never waits. A point that does
    /// not come back whole (a diverged run's weights) is dropped: the run keeps the one it
    /// had.
    pub fn update(&mut self, runs: &[Run], now: f64) {
        let points = &mut self.points;
        self.pending.retain(|id, (step, p)| match p.try_take() {
            Ok(None) => true,
            Ok(Some(c)) => {
                points.insert(*id, (*step, c));
                false
            }
            Err(e) => {
                log::warn!("run {id}: no recovery point at step {step}: {e:#}");
                false
            }
        });
        let live = |id: &u64| runs.iter().any(|r| r.id == *id);
        self.points.retain(|id, _| live(id));
        self.pending.retain(|id, _| live(id));
        self.started_at.retain(|id, _| live(id));
        for r in runs {
            let step = r.steps();
            let due = self
                .started_at
                .get(&r.id)
                .is_none_or(|t| now - t >= self.every_s);
            if step == 0
                || !due
                || r.error.is_some()
                || self.pending.contains_key(&r.id)
                || self.step_of(r.id) == Some(step)
            {
                continue;
            }
            match r.start_checkpoint() {
                Ok(p) => {
                    self.pending.insert(r.id, (step, p));
                    self.started_at.insert(r.id, now);
                }
                Err(e) => log::warn!("run {}: no recovery point: {e:#}", r.id),
            }
        }
    }

    /// The steps of run `id`'s recovery point, if it has one.
    pub fn step_of(&self, id: u64) -> Option<u64> {
        self.points.get(&id).map(|(s, _)| *s)
    }

    /// Forgets run `id`'s point (the run started over).
    pub fn forget(&mut self, id: u64) {
        self.points.remove(&id);
        self.pending.remove(&id);
        self.started_at.remove(&id);
    }

    fn take(&mut self, id: u64) -> Option<(u64, Checkpoint)> {
        self.points.remove(&id)
    }
}

/// A run's host side, which outlives its device.
struct Survivor {
    id: u64,
    name: String,
    settings: RunSettings,
    running: bool,
    data: Arc<Data>,
    history: History,
    probe_every: u64,
    point: Option<(u64, Checkpoint)>,
}

/// What a lost device leaves of the app: each run's host side and recovery point, and the
/// app's selection, to continue on a new device.
pub struct Recovery {
    runs: Vec<Survivor>,
    /// What wgpu said about the loss.
    pub reason: String,
    /// Restarts before this one in this session.
    pub restarts: u32,
    /// The run the views showed.
    pub selected: Option<u64>,
    /// The open tab.
    pub tab: Tab,
    /// The app's launch settings, without the runs it started with (they are in `runs`).
    pub launch: Launch,
}

impl Recovery {
    /// Takes the runs out of `runs` (their device is gone) with their recovery points.
    pub fn take(runs: Vec<Run>, points: &mut RecoveryPoints, reason: String) -> Self {
        let runs = runs
            .into_iter()
            .map(|r| Survivor {
                point: points.take(r.id),
                probe_every: r.probe_every(),
                running: r.running || r.interrupted,
                id: r.id,
                // The rest of the run (its GPU state) is dropped here.
                name: r.name,
                settings: r.settings,
                data: r.data,
                history: r.history,
            })
            .collect();
        Self {
            runs,
            reason,
            restarts: 0,
            selected: None,
            tab: Tab::Curves,
            launch: Launch::default(),
        }
    }

    /// True once the device was lost [`MAX_RESTARTS`] times after the first: a restart
    /// should not be tried again.
    pub fn exhausted(&self) -> bool {
        self.restarts >= MAX_RESTARTS
    }

    /// What to tell the user when the runs are not restarted.
    pub fn give_up_message(&self) -> String {
        let how = if cfg!(target_arch = "wasm32") {
            "reload the page"
        } else {
            "restart nnlab"
        };
        let again = if self.restarts > 0 {
            format!(", again after {} restarts", self.restarts)
        } else {
            String::new()
        };
        format!(
            "The GPU device was lost ({}){again}: {how}, then load the checkpoints you saved \
             to continue the runs.",
            self.reason
        )
    }

    /// Runs in it.
    pub fn len(&self) -> usize {
        self.runs.len()
    }

    /// True without runs.
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// Builds the runs on `gpu`: each from its recovery point, or from its settings when it
    /// had none yet. Returns them with one line per run saying where it continues.
    pub fn restore(self, gpu: &Gpu) -> (Vec<Run>, Vec<String>) {
        let mut runs = Vec::new();
        let mut said = Vec::new();
        for s in self.runs {
            let Survivor {
                id,
                name,
                settings,
                running,
                data,
                history,
                probe_every,
                point,
            } = s;
            let (run, line) = match &point {
                Some((step, c)) => (
                    Run::resume(gpu, id, c, settings, data, history),
                    format!("run {id} from step {step}"),
                ),
                None => (
                    Run::new(gpu, id, settings, data),
                    format!("run {id} from the start (no recovery point yet)"),
                ),
            };
            match run {
                Ok(mut r) => {
                    r.name = name;
                    r.running = running;
                    r.set_probe_every(probe_every);
                    runs.push(r);
                    said.push(line);
                }
                Err(e) => said.push(format!("run {id} could not be rebuilt: {e:#}")),
            }
        }
        (runs, said)
    }
}

impl NnlabApp {
    /// Sets what happens to the runs when the device is lost (see [`Restart`]).
    pub fn with_restart(mut self, restart: Restart) -> Self {
        self.restart = Some(restart);
        self
    }

    /// An app on eframe's (new) device continuing the runs of a lost one.
    pub fn restarted(cc: &eframe::CreationContext<'_>, recovery: Recovery) -> Self {
        let mut app = Self::bare(cc, recovery.launch.clone());
        app.resume(recovery);
        app
    }

    /// Continues the runs of a lost device in this app's lab, each from its recovery point.
    pub fn resume(&mut self, recovery: Recovery) {
        let Some(lab) = &mut self.lab else {
            self.recovery = Some(recovery);
            return;
        };
        self.restarts = recovery.restarts + 1;
        self.tab = recovery.tab;
        let (reason, selected) = (recovery.reason.clone(), recovery.selected);
        let (runs, said) = recovery.restore(lab.gpu());
        lab.insert_restored(runs);
        self.selected = selected
            .filter(|id| lab.get(*id).is_some())
            .or_else(|| lab.runs.first().map(|r| r.id));
        self.error = Some(format!(
            "The GPU device was lost ({reason}); the runs continue on a new device: {}.",
            said.join(", ")
        ));
    }

    /// The device is gone: the runs go to [`NnlabApp::with_restart`]'s hook (which gives up
    /// once [`Recovery::exhausted`]), or, without one, stay in `recovery` while the message
    /// says how to go on.
    pub(super) fn device_lost(&mut self) {
        let Some(lab) = &mut self.lab else { return };
        if self.lost {
            return;
        }
        self.lost = true;
        let mut recovery = lab.take_recovery();
        recovery.restarts = self.restarts;
        recovery.selected = self.selected;
        recovery.tab = self.tab;
        recovery.launch = Launch {
            runs: Vec::new(),
            lose_device_after: None,
            ..self.launch.clone()
        };
        let reason = recovery.reason.clone();
        match &self.restart {
            Some(restart) => {
                self.error = Some(format!(
                    "The GPU device was lost ({reason}): the runs start again on a new device."
                ));
                restart(recovery);
            }
            None => {
                self.error = Some(recovery.give_up_message());
                self.recovery = Some(recovery);
            }
        }
    }
}

impl Drop for NnlabApp {
    fn drop(&mut self) {
        // eframe's painter can fail on a lost device before a frame of ours noticed, and
        // end the window (natively egui-wgpu panics): the runs are handed on from here then.
        if self.lab.as_ref().is_some_and(|l| l.gpu().is_lost()) {
            self.device_lost();
        }
    }
}
