//! torchvision-named weights (`.safetensors` exported from a state dict) into registry
//! models: strictly, or for fine-tuning with a fresh classifier head. Works on bytes, so the
//! browser can load them too.

use anyhow::{Result, ensure};
use gpu_nn::nn::{self, Module};

use crate::checkpoint::read_safetensors;

/// Loads torchvision weights from `bytes` into `net`; `name` names the source in errors.
/// With `head` (fine-tuning), the head's keys are left out of the file's and the model's
/// (it stays fresh, sized for the new classes). Any missing key, unexpected key or shape
/// mismatch is an error listing all of them, and nothing is loaded then.
pub fn load_bytes(net: &dyn Module, bytes: &[u8], name: &str, head: Option<&str>) -> Result<()> {
    let (mut state, _) = read_safetensors(bytes, name)?;
    if let Some(head) = head {
        state.retain(|k, _| !k.starts_with(head));
        // Check that only the head is left over before loading anything.
        let mut model_keys = Vec::new();
        net.visit("", &mut |k, _| model_keys.push(k));
        let missing: Vec<&String> = model_keys
            .iter()
            .filter(|k| !k.starts_with(head) && !state.contains_key(*k))
            .filter(|k| !k.ends_with("num_batches_tracked"))
            .collect();
        let unexpected: Vec<&String> = state.keys().filter(|k| !model_keys.contains(k)).collect();
        ensure!(
            missing.is_empty() && unexpected.is_empty(),
            "{name}: weights do not fit the model:\nmissing keys: {missing:?}\nunexpected keys: {unexpected:?}"
        );
    }
    nn::load_state(net, &state, head.is_none())
        .map_err(|e| anyhow::anyhow!("{name}: weights do not fit the model: {e}"))?;
    Ok(())
}

/// [`load_bytes`] from a file. Native only.
#[cfg(not(target_arch = "wasm32"))]
pub fn load_file(net: &dyn Module, path: &std::path::Path, head: Option<&str>) -> Result<()> {
    use anyhow::Context;
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    load_bytes(net, &bytes, &path.display().to_string(), head)
}
