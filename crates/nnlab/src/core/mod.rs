//! The training core: one classifier step, one DCGAN iteration, evaluation, checkpoints
//! and the readback queue, shared by `nnlab train`, `nnlab gan`, `nnlab bench` and the app.
//!
//! Nothing here blocks except the native-only `*_blocking` and `run_epoch` functions the CLI
//! uses; the app drives the same types by polling.

pub mod classifier;
pub mod eval;
pub mod explain;
pub mod gan;
pub mod inflight;
pub mod landscape;
pub mod probe;
pub mod snapshot;
pub mod spec;
pub mod step;
pub mod study;
pub mod summary;

pub use classifier::Classifier;
#[cfg(not(target_arch = "wasm32"))]
pub use classifier::{EpochRun, Running};
pub use eval::{Confusion, EVAL_BATCH, EvalResult, Evaluation};
pub use gan::Gan;
pub use inflight::{Diverged, InFlight, StepResult};
pub use probe::{GradNorms, GradProbe};
pub use snapshot::PendingCheckpoint;
pub use spec::{DataSource, ModelSpec, Opt, OptSettings, Progress, TrainConfig};
