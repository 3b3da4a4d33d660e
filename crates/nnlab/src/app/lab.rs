//! The lab: runs side by side on the one device. Each frame collects what came back for
//! every run, then submits steps of the running ones in turn: on a GPU until the frame's
//! time budget is spent, on a CPU adapter one burst of one run at a time.

use anyhow::{Context, Result};
use egui::Color32;
use gpu_nn::Gpu;

use super::data::DataCache;
use super::recovery::{Recovery, RecoveryPoints};
use super::run::{Run, RunSettings};
use crate::checkpoint::Checkpoint;

/// Legend colours, one per run in turn (Tableau 10: distinct, and readable on dark).
const PALETTE: [Color32; 10] = [
    Color32::from_rgb(78, 121, 167),
    Color32::from_rgb(242, 142, 43),
    Color32::from_rgb(225, 87, 89),
    Color32::from_rgb(118, 183, 178),
    Color32::from_rgb(89, 161, 79),
    Color32::from_rgb(237, 201, 72),
    Color32::from_rgb(176, 122, 161),
    Color32::from_rgb(255, 157, 167),
    Color32::from_rgb(156, 117, 95),
    Color32::from_rgb(186, 176, 172),
];

/// The colour of run `id`.
pub fn color(id: u64) -> Color32 {
    PALETTE[(id as usize).wrapping_sub(1) % PALETTE.len()]
}

/// Stops `r` with its error. A device failing under a running run (a readback the browser
/// fails before it reports the device lost) marks it interrupted, so that on a new device
/// it runs again; its own errors (divergence) do not.
fn stop(r: &mut Run, was_running: bool, e: &anyhow::Error) {
    let device = e
        .chain()
        .any(|c| c.downcast_ref::<gpu_nn::Error>().is_some());
    r.interrupted |= was_running && device;
    r.running = false;
    r.error = Some(format!("{e:#}"));
}

/// Runs side by side on one device.
pub struct Lab {
    gpu: Gpu,
    /// The runs, in the order they were added.
    pub runs: Vec<Run>,
    data: DataCache,
    next_id: u64,
    /// Where the round-robin over running runs continues.
    cursor: usize,
    cpu: bool,
    /// Each run's latest copy in host memory, to continue on a new device if this one is lost.
    pub recovery: RecoveryPoints,
}

impl Lab {
    /// An empty lab on `gpu`.
    pub fn new(gpu: &Gpu) -> Self {
        Self {
            gpu: gpu.clone(),
            runs: Vec::new(),
            data: DataCache::default(),
            next_id: 1,
            cursor: 0,
            cpu: gpu.adapter_info().device_type == gpu_nn::wgpu::DeviceType::Cpu,
            recovery: RecoveryPoints::default(),
        }
    }

    /// The device.
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// Adds a run of `settings` (not started); returns its id.
    pub fn add(&mut self, settings: RunSettings) -> Result<u64> {
        let data = self.data.get(&settings.data)?;
        let id = self.next_id;
        let run = Run::new(&self.gpu, id, settings, data)?;
        self.next_id += 1;
        self.runs.push(run);
        Ok(id)
    }

    /// Adds a run continuing from checkpoint bytes (`name` names them in errors).
    pub fn add_checkpoint(&mut self, name: &str, bytes: &[u8]) -> Result<u64> {
        let c = Checkpoint::from_bytes(bytes, name)?;
        let id = self.next_id;
        let mut run = Run::from_checkpoint(&self.gpu, id, &c, &mut self.data)
            .with_context(|| format!("{name}: cannot load it as a run"))?;
        run.name = format!("{id}: {} (from {name})", run.settings.model);
        self.next_id += 1;
        self.runs.push(run);
        Ok(id)
    }

    /// The run `id`.
    pub fn get(&self, id: u64) -> Option<&Run> {
        self.runs.iter().find(|r| r.id == id)
    }

    /// The run `id`, to change.
    pub fn get_mut(&mut self, id: u64) -> Option<&mut Run> {
        self.runs.iter_mut().find(|r| r.id == id)
    }

    /// Removes run `id` and gives its GPU memory back: its tensors and pictures are
    /// dropped, then the pool's free buffers are released to the driver.
    pub fn remove(&mut self, id: u64) -> Result<()> {
        self.runs.retain(|r| r.id != id);
        // Buffers released while commands were recorded return to the pool at the submit.
        self.gpu.flush()?;
        self.gpu.trim_pool();
        Ok(())
    }

    /// Starts run `id` over: fresh weights and optimizer from its settings (same seed), an
    /// empty history. Its memory is given back before the new run is built.
    pub fn reset(&mut self, id: u64) -> Result<()> {
        let Some(i) = self.runs.iter().position(|r| r.id == id) else {
            return Ok(());
        };
        let old = self.runs.remove(i);
        self.recovery.forget(id);
        let (settings, name, data) = (old.settings.clone(), old.name.clone(), old.data.clone());
        drop(old);
        self.gpu.flush()?;
        self.gpu.trim_pool();
        let mut run = Run::new(&self.gpu, id, settings, data)
            .with_context(|| format!("run {id} could not be built again"))?;
        run.name = name;
        self.runs.insert(i, run);
        Ok(())
    }

    /// Makes data decoded elsewhere (an image folder, over frames) the data of its choice
    /// for runs added while someone holds it.
    pub fn adopt_data(&mut self, d: &std::sync::Arc<super::data::Data>) {
        self.data.adopt(d);
    }

    /// Datasets held by some run.
    pub fn datasets(&self) -> usize {
        self.data.live()
    }

    /// Starts (or pauses) every run.
    pub fn set_all_running(&mut self, on: bool) {
        for r in &mut self.runs {
            r.running = on && r.error.is_none();
        }
    }

    /// True while any run trains or has work on the GPU.
    pub fn busy(&self) -> bool {
        self.runs.iter().any(|r| r.running || r.busy())
    }

    /// Collects what came back for every run (never waits), then keeps their recovery
    /// points. A run that fails stops with its error; the others go on. On a lost device
    /// nothing is collected: the runs go to a new device as they were ([`Lab::take_recovery`]).
    pub fn poll(&mut self, now: f64) {
        self.gpu.poll();
        if self.gpu.is_lost() {
            return;
        }
        for r in &mut self.runs {
            let running = r.running;
            if let Err(e) = r.poll(now) {
                stop(r, running, &e);
            }
        }
        self.recovery.update(&self.runs, now);
    }

    /// Takes every run out, with its recovery point, to continue on a new device.
    pub fn take_recovery(&mut self) -> Recovery {
        let why = self.gpu.lost_reason().unwrap_or_default();
        Recovery::take(std::mem::take(&mut self.runs), &mut self.recovery, why)
    }

    /// Adds runs rebuilt from a [`Recovery`], keeping their ids.
    pub fn insert_restored(&mut self, runs: Vec<Run>) {
        for r in runs {
            self.next_id = self.next_id.max(r.id + 1);
            self.runs.push(r);
        }
    }

    /// Submits steps of the running runs, in turn, starting where the last frame stopped.
    /// A GPU takes steps until `budget_s` of this frame is spent (each run at most its
    /// in-flight limit ahead); a CPU adapter one burst of one run, once nothing is out.
    pub fn submit(&mut self, now: f64, budget_s: f64) {
        let t0 = web_time::Instant::now();
        let n = self.runs.len();
        if n == 0 {
            return;
        }
        if self.cpu && self.runs.iter().any(|r| r.in_flight() > 0) {
            return;
        }
        let mut idle_rounds = 0;
        while idle_rounds < n {
            let i = self.cursor % n;
            self.cursor = (self.cursor + 1) % n;
            let r = &mut self.runs[i];
            if !(r.running && r.can_step()) {
                idle_rounds += 1;
                continue;
            }
            idle_rounds = 0;
            let k = r.burst();
            if let Err(e) = r.submit(now, k) {
                stop(r, true, &e);
            }
            if self.cpu || t0.elapsed().as_secs_f64() > budget_s {
                break;
            }
        }
    }
}
