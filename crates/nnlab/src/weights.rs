//! torchvision-named weights (`.safetensors` exported from a state dict) into registry
//! models: strictly, or for fine-tuning with a fresh classifier head. Works on bytes, so the
//! browser can load them too.

use std::sync::Arc;

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

/// The names and shapes of a safetensors file's tensors, from its header alone.
pub fn tensor_shapes(bytes: &[u8]) -> Option<std::collections::BTreeMap<String, Vec<usize>>> {
    let (_, m) = safetensors::SafeTensors::read_metadata(bytes).ok()?;
    Some(
        m.tensors()
            .into_iter()
            .map(|(k, info)| (k, info.shape.clone()))
            .collect(),
    )
}

/// Weights a run starts from: the bytes of a torchvision-named `.safetensors` state dict,
/// shared by the runs that use them (two runs start alike only from the very same bytes).
#[derive(Clone)]
pub struct Pretrained {
    /// The file's name.
    pub name: String,
    /// Its bytes.
    pub bytes: Arc<[u8]>,
}

impl PartialEq for Pretrained {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.bytes, &other.bytes)
    }
}

impl std::fmt::Debug for Pretrained {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pretrained({}, {} bytes)", self.name, self.bytes.len())
    }
}
