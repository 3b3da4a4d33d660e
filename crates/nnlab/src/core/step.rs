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
    let logits = net.forward(x, &mut Ctx::train(seed))?;
    let loss = cross_entropy(&logits, y)?;
    let grads = loss.backward()?;
    opt.step(&grads)?;
    let count = correct_count(&logits.detach(), y)?;
    Ok(cat_channels(&[
        &loss.detach().reshape(&[1, 1])?,
        &count.reshape(&[1, 1])?,
    ])?)
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
