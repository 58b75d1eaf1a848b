//! The vector quantizer of the VQ-VAE: nearest-code assignment, straight-through gradient, codebook
//! and commitment losses, or an EMA codebook (with its running statistics) and dead-code restarts;
//! usage statistics on the GPU.

use crate::error::{Error, Result, Setting};
use crate::io::checkpoint::Checkpoint;
use crate::nn::{Embedding, Scope};
use crate::ops::ema::{self, EmaTensors};
use crate::ops::{elementwise, gather, reduce, vq};
use crate::tensor::Tensor;

/// Largest codebook the quantizer takes (the per-code sums run one workgroup per code).
pub const MAX_CODES: usize = gather::MAX_ROWS;
/// Largest code dimension the quantizer takes (the largest the tests cover).
pub const MAX_CODE_DIM: usize = 512;

/// EMA hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EmaConfig {
    /// Decay gamma (0.99 in the paper).
    pub decay: f32,
    /// Laplace smoothing epsilon (1e-5).
    pub eps: f32,
}

impl Default for EmaConfig {
    fn default() -> Self {
        Self {
            decay: 0.99,
            eps: 1e-5,
        }
    }
}

/// How the codebook learns.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum CodebookUpdate {
    /// Exponential moving averages of the assigned encoder outputs (the default).
    Ema {
        /// Decay and Laplace epsilon.
        config: EmaConfig,
        /// Re-initialise codes unused for this many steps (`None`: never).
        restart_after: Option<u32>,
    },
    /// Gradient descent on the codebook loss `||sg(z) - e||^2`.
    Loss,
}

impl CodebookUpdate {
    /// Records the update rule in checkpoint metadata (`quantizer`, and the EMA settings).
    pub fn write_meta(&self, ck: &mut Checkpoint) {
        match self {
            CodebookUpdate::Ema {
                config,
                restart_after,
            } => {
                ck.set("quantizer", "ema");
                ck.set("ema_decay", config.decay);
                ck.set("ema_eps", config.eps);
                ck.set("restart_after", restart_after.unwrap_or(0));
            }
            CodebookUpdate::Loss => ck.set("quantizer", "loss"),
        }
    }

    /// The update rule recorded by [`CodebookUpdate::write_meta`].
    pub fn from_meta(ck: &Checkpoint) -> Result<Self> {
        Ok(match ck.meta("quantizer")? {
            "ema" => CodebookUpdate::Ema {
                config: EmaConfig {
                    decay: ck.meta_parse("ema_decay")?,
                    eps: ck.meta_parse("ema_eps")?,
                },
                restart_after: Some(ck.meta_parse::<u32>("restart_after")?).filter(|&n| n > 0),
            },
            _ => CodebookUpdate::Loss,
        })
    }
}

/// The running statistics of an EMA codebook (PyTorch buffers `cluster_size`, `embed_avg`) plus
/// the number of consecutive steps each code went unused.
pub struct EmaState {
    /// N_k, [K].
    pub cluster_size: Tensor,
    /// m_k, [K, D].
    pub embed_avg: Tensor,
    /// Steps since each code was last chosen, [K].
    pub unused_steps: Tensor,
}

impl EmaState {
    /// The state matching a fresh codebook: N_k = 0, m_k = e_k, no idle steps (as the reference).
    pub fn new(codebook: &Tensor) -> Self {
        let k = codebook.dim(0);
        Self {
            cluster_size: Tensor::zeros(codebook.gpu(), &[k]),
            embed_avg: elementwise::copy(&codebook.detach()),
            unused_steps: Tensor::zeros(codebook.gpu(), &[k]),
        }
    }

    /// The tensors the EMA kernels read and write.
    pub fn tensors(&self) -> EmaTensors<'_> {
        EmaTensors {
            cluster_size: &self.cluster_size,
            embed_avg: &self.embed_avg,
            unused_steps: &self.unused_steps,
        }
    }

    /// (name suffix, tensor) of every buffer, as saved in checkpoints.
    fn named(&self) -> [(&'static str, &Tensor); 3] {
        [
            ("cluster_size", &self.cluster_size),
            ("embed_avg", &self.embed_avg),
            ("unused_steps", &self.unused_steps),
        ]
    }
}

/// What one quantization step produces.
pub struct Quantized {
    /// The code vectors with the straight-through gradient to the encoder, [B, D, H, W].
    pub z_q: Tensor,
    /// Commitment loss `beta ||z - sg(e)||^2` (plus the codebook loss in `Loss` mode), [1].
    pub loss: Tensor,
    /// Chosen code per position, [B, H, W].
    pub codes: Tensor,
    /// [perplexity, share of codes used] of this batch, [2].
    pub stats: Tensor,
    /// Number of codes restarted in this step, [1] (zero when restarts are off or not training).
    pub restarted: Tensor,
}

/// A codebook of K vectors of dimension D (`{scope}.embedding.weight`, as the reference).
pub struct VectorQuantizer {
    /// The codebook [K, D].
    pub codebook: Embedding,
    /// Commitment weight.
    pub beta: f32,
    prefix: String,
    update: CodebookUpdate,
    ema: Option<EmaState>,
    step: u32,
}

impl VectorQuantizer {
    /// Checks K and D and the commitment weight.
    pub fn validate(codes: usize, dim: usize, beta: f32) -> Result<()> {
        if !(1..=MAX_CODES).contains(&codes) {
            return Err(Error::setting(
                Setting::CodebookSize,
                format!("must be in 1..={MAX_CODES}, got {codes}"),
            ));
        }
        if !(1..=MAX_CODE_DIM).contains(&dim) {
            return Err(Error::setting(
                Setting::CodeDim,
                format!("must be in 1..={MAX_CODE_DIM}, got {dim}"),
            ));
        }
        if !(beta >= 0.0 && beta.is_finite()) {
            return Err(Error::setting(
                Setting::Commitment,
                format!("must be a non-negative number, got {beta}"),
            ));
        }
        Ok(())
    }

    /// Registers `embedding.weight` [K, D] in `scope`, initialised U(-1/K, 1/K) as the reference.
    pub fn new(
        scope: &mut Scope,
        codes: usize,
        dim: usize,
        beta: f32,
        update: CodebookUpdate,
    ) -> Self {
        let codebook = Embedding::uniform(
            &mut scope.scope("embedding"),
            codes,
            dim,
            1.0 / codes as f32,
        );
        Self {
            codebook,
            beta,
            prefix: scope.prefix().to_string(),
            update,
            ema: None,
            step: 0,
        }
    }

    /// Creates the EMA statistics once the parameter store is finalized.
    pub fn init_state(&mut self) {
        if matches!(self.update, CodebookUpdate::Ema { .. }) && self.ema.is_none() {
            self.ema = Some(EmaState::new(self.codebook.weight.tensor()));
        }
    }

    /// The EMA statistics (`cluster_size`, `embed_avg`, idle steps), if the codebook uses EMA.
    pub fn ema_state(&self) -> Option<&EmaState> {
        self.ema.as_ref()
    }

    /// How the codebook learns.
    pub fn update(&self) -> CodebookUpdate {
        self.update
    }

    /// Number of codes K.
    pub fn codes(&self) -> usize {
        self.codebook.count()
    }

    /// The training steps taken (seeds the restart choice); restored from checkpoints.
    pub fn steps(&self) -> u32 {
        self.step
    }

    /// Sets the step counter (when resuming).
    pub fn set_steps(&mut self, step: u32) {
        self.step = step;
    }

    /// Adds the EMA statistics to a checkpoint as `{scope}.cluster_size`, `{scope}.embed_avg` and
    /// `{scope}.unused_steps` (nothing for a codebook-loss quantizer).
    pub fn write_state(&self, ck: &mut Checkpoint) -> Result<()> {
        if let Some(state) = &self.ema {
            for (name, t) in state.named() {
                ck.insert(&format!("{}.{name}", self.prefix), t.shape(), t.to_vec()?);
            }
        }
        Ok(())
    }

    /// Loads the EMA statistics saved by [`VectorQuantizer::write_state`].
    pub fn read_state(&self, ck: &Checkpoint) -> Result<()> {
        if let Some(state) = &self.ema {
            for (name, t) in state.named() {
                t.write(ck.get(&format!("{}.{name}", self.prefix), t.shape())?)?;
            }
        }
        Ok(())
    }

    /// Quantizes z [B, D, H, W]. With `train`, an EMA codebook is updated from this batch (after
    /// z_q is taken from the current codebook, as in the reference) and dead codes are restarted.
    pub fn forward(&mut self, z: &Tensor, train: bool) -> Quantized {
        let _layer = crate::gpu::profile::layer(&self.prefix);
        let k = self.codes();
        let codebook = self.codebook.weight.tensor();
        let codes = vq::nearest_codes(&z.detach(), &codebook.detach());
        let ema_mode = matches!(self.update, CodebookUpdate::Ema { .. });
        // in EMA mode the codebook takes no gradient
        let gathered = if ema_mode {
            self.codebook.lookup_detached(&codes)
        } else {
            self.codebook.forward(&codes)
        };
        let commitment = reduce::mse_loss(z, &gathered.detach()).scale(self.beta);
        let loss = if ema_mode {
            commitment
        } else {
            reduce::mse_loss(&gathered, &z.detach()).add(&commitment)
        };
        let z_q = vq::straight_through(z, &gathered);
        let (counts, sums) = gather::index_sums(&codes, &z.detach(), k);
        let stats = vq::code_stats(&counts, codes.numel());
        let mut restarted = Tensor::zeros(z.gpu(), &[1]);
        if train {
            if let (
                CodebookUpdate::Ema {
                    config,
                    restart_after,
                },
                Some(state),
            ) = (self.update, &self.ema)
            {
                ema::ema_update(
                    codebook,
                    state.tensors(),
                    &counts,
                    &sums,
                    config.decay,
                    config.eps,
                );
                if let Some(after) = restart_after {
                    // the first step restarts every code its batch left unused: the codebook
                    // starts from data, and even a short run uses more than one code
                    let after = if self.step == 0 { 1 } else { after };
                    let flags = ema::restart_dead(
                        codebook,
                        state.tensors(),
                        &counts,
                        &z.detach(),
                        after,
                        self.step,
                    );
                    restarted = reduce::sum(&flags);
                }
            }
            self.step += 1;
        }
        Quantized {
            z_q,
            loss,
            codes,
            stats,
            restarted,
        }
    }
}
