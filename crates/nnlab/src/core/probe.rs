//! Gradient flow: per layer, the norm of the gradient and of the weight at a step, read
//! back from the training step that computed them (He et al. 2015 and 2016; Glorot and
//! Bengio 2010: gradients that shrink layer by layer towards the input).

use anyhow::Result;
use gpu_nn::Readback;

/// One step's norms on their way back.
pub struct GradProbe {
    /// Steps done once the probed step finished.
    pub step: u64,
    layers: Vec<String>,
    read: Readback,
}

/// Per-layer norms of one step.
#[derive(Clone, Debug, PartialEq)]
pub struct GradNorms {
    /// Steps done once the probed step finished.
    pub step: u64,
    /// Weight names (`layer1.0.conv1.weight`), input side first.
    pub layers: Vec<String>,
    /// ‖∇W‖ per layer.
    pub grad: Vec<f32>,
    /// ‖W‖ per layer, before the step's update.
    pub weight: Vec<f32>,
}

impl GradNorms {
    /// ‖∇W‖ / ‖W‖ per layer: how much a step moves each layer, relatively.
    pub fn relative(&self) -> Vec<f32> {
        self.grad
            .iter()
            .zip(&self.weight)
            .map(|(g, w)| if *w > 0.0 { g / w } else { 0.0 })
            .collect()
    }

    /// First (input-side) layer's gradient norm over the last layer's.
    pub fn first_to_last(&self) -> Option<f32> {
        let (f, l) = (*self.grad.first()?, *self.grad.last()?);
        (l > 0.0).then(|| f / l)
    }
}

impl GradProbe {
    /// Wraps the readback of [1, 3L] squared norms of `layers` (see
    /// [`super::step::classifier_step_probed`]).
    pub fn new(step: u64, layers: Vec<String>, read: Readback) -> Self {
        Self { step, layers, read }
    }

    fn norms(&mut self, v: Vec<f32>) -> GradNorms {
        let (small, large) = (
            f64::from(super::step::PROBE_SMALL),
            f64::from(super::step::PROBE_LARGE),
        );
        let (grad, weight) = v
            .chunks_exact(3)
            .map(|p| {
                // The small-scale sum is exact unless it overflowed; then the large one is.
                let g = if p[0].is_finite() {
                    f64::from(p[0]).sqrt() / small
                } else {
                    f64::from(p[1]).sqrt() / large
                };
                (g as f32, p[2].sqrt())
            })
            .unzip();
        GradNorms {
            step: self.step,
            layers: std::mem::take(&mut self.layers),
            grad,
            weight,
        }
    }

    /// Non-blocking: the norms once they are back.
    pub fn try_take(&mut self) -> Result<Option<GradNorms>> {
        Ok(self.read.try_take()?.map(|v| self.norms(v)))
    }

    /// Waits for the norms. Native only.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn wait_blocking(mut self) -> Result<GradNorms> {
        let v = self.read.take_blocking()?;
        Ok(self.norms(v))
    }
}
