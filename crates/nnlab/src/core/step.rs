//! One training step, recorded: what `nnlab train`, `nnlab gan`, the app and `nnlab bench`
//! all run. Nothing here submits or waits; the caller reads the returned pair back.

use anyhow::Result;
use gpu_nn::models::{Discriminator, Generator};
use gpu_nn::nn::{Ctx, Module};
use gpu_nn::{Optimizer, Tensor, bce_with_logits, cat_channels, correct_count, cross_entropy};

/// Records a classifier step on (x, y): forward in training mode (dropout from `seed`),
/// cross-entropy, backward, the optimizer update. Returns [1, 2]: the loss (before the
/// update) and the number of correct predictions, for one readback.
pub fn classifier_step(
    net: &dyn Module,
    opt: &mut dyn Optimizer,
    x: &Tensor,
    y: &Tensor,
    seed: u64,
) -> Result<Tensor> {
    Ok(classifier_step_probed(net, opt, x, y, seed, false)?.0)
}

/// Scales at which gradient squares are summed: 2^50 resolves gradients down to 1e-37
/// (and overflows above 1e4), 2^-10 takes the large ones.
pub const PROBE_SMALL: f32 = 1_125_899_906_842_624.0;
/// See [`PROBE_SMALL`].
pub const PROBE_LARGE: f32 = 1.0 / 1024.0;

/// The probed weights' names and their [1, 3L] squared norms on the GPU.
pub type Probed = (Vec<String>, Tensor);

/// The weights whose gradients the gradient-flow view follows: every conv and linear
/// weight, in the model's order (biases and batch-norm parameters left out).
pub fn probed_weights(net: &dyn Module) -> Vec<(String, Tensor)> {
    gpu_nn::nn::named_tensors(net)
        .into_iter()
        .filter(|(name, t)| name.ends_with("weight") && t.shape().len() >= 2)
        .collect()
}

/// [`classifier_step`], and with `probe` also the names of the [`probed_weights`] that got
/// a gradient and [1, 3L]: ((2^50 ‖∇W‖)², (2^-10 ‖∇W‖)², ‖W‖²) of each, W before the update;
/// recorded in the same submission.
pub fn classifier_step_probed(
    net: &dyn Module,
    opt: &mut dyn Optimizer,
    x: &Tensor,
    y: &Tensor,
    seed: u64,
    probe: bool,
) -> Result<(Tensor, Option<Probed>)> {
    let logits = net.forward(x, &mut Ctx::train(seed))?;
    let loss = cross_entropy(&logits, y)?;
    let grads = loss.backward()?;
    let norms = if probe {
        let _g = gpu_nn::no_grad();
        let mut parts = Vec::new();
        let mut names = Vec::new();
        for (name, w) in probed_weights(net) {
            let Some(g) = grads.get(&w) else { continue };
            // A deep net without batch norm has gradients near 1e-21, whose squares
            // underflow f32: the squares are summed at two scales, and the host takes the
            // finite one (see `probe::GradProbe`).
            for scale in [PROBE_SMALL, PROBE_LARGE] {
                let sq = g.scale(scale)?.unary(gpu_nn::Unary::Square)?.sum()?;
                parts.push(sq.reshape(&[1, 1])?);
            }
            parts.push(w.unary(gpu_nn::Unary::Square)?.sum()?.reshape(&[1, 1])?);
            names.push(name);
        }
        let refs: Vec<&Tensor> = parts.iter().collect();
        match refs.is_empty() {
            true => None,
            false => Some((names, cat_channels(&refs)?)),
        }
    } else {
        None
    };
    opt.step(&grads)?;
    let count = correct_count(&logits.detach(), y)?;
    let pair = cat_channels(&[&loss.detach().reshape(&[1, 1])?, &count.reshape(&[1, 1])?])?;
    Ok((pair, norms))
}

/// The DCGAN and its two optimizers (Adam 2e-4, betas 0.5/0.999).
pub struct GanNets<'a> {
    /// The generator.
    pub g: &'a Generator,
    /// The discriminator.
    pub d: &'a Discriminator,
    /// The generator's optimizer.
    pub opt_g: &'a mut dyn Optimizer,
    /// The discriminator's optimizer.
    pub opt_d: &'a mut dyn Optimizer,
}

/// Records one DCGAN iteration: a discriminator step on `real` and G(`z`), then a generator
/// step (BCE with logits; targets `ones` and `zeros`, [n, 1]). Returns [1, 2]: (D loss,
/// G loss).
pub fn gan_iteration(
    nets: GanNets<'_>,
    real: &Tensor,
    z: &Tensor,
    (ones, zeros): (&Tensor, &Tensor),
    seed: u64,
) -> Result<Tensor> {
    let GanNets { g, d, opt_g, opt_d } = nets;
    let fake = g.forward(z, &mut Ctx::train(seed))?;
    let d_real = d.forward(real, &mut Ctx::train(seed))?;
    let d_fake = d.forward(&fake.detach(), &mut Ctx::train(seed))?;
    let loss_d = bce_with_logits(&d_real, ones)?.add(&bce_with_logits(&d_fake, zeros)?)?;
    opt_d.step(&loss_d.backward()?)?;
    let loss_g = bce_with_logits(&d.forward(&fake, &mut Ctx::train(seed))?, ones)?;
    opt_g.step(&loss_g.backward()?)?;
    Ok(cat_channels(&[
        &loss_d.detach().reshape(&[1, 1])?,
        &loss_g.detach().reshape(&[1, 1])?,
    ])?)
}
