//! The vector quantizer of the VQ-VAE: nearest-code assignment, straight-through gradient, codebook
//! and commitment losses, or an EMA codebook with dead-code restarts; usage statistics on the GPU.

use crate::nn::{Param, ParamStore};
use crate::ops::ema::{self, EmaConfig, EmaState};
use crate::ops::{reduce, vq};
use crate::tensor::Tensor;

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

/// A codebook of K vectors of dimension D (`vq.embedding.weight`, as the reference).
pub struct VectorQuantizer {
    /// The codebook [K, D].
    pub codebook: Param,
    /// Commitment weight.
    pub beta: f32,
    update: CodebookUpdate,
    ema: Option<EmaState>,
    step: u32,
}

impl VectorQuantizer {
    /// Registers `{name}.embedding.weight` [K, D], initialised U(-1/K, 1/K) as the reference.
    pub fn new(
        ps: &mut ParamStore,
        name: &str,
        codes: usize,
        dim: usize,
        beta: f32,
        update: CodebookUpdate,
    ) -> Self {
        let codebook = ps.uniform(
            &format!("{name}.embedding.weight"),
            &[codes, dim],
            1.0 / codes as f32,
        );
        Self {
            codebook,
            beta,
            update,
            ema: None,
            step: 0,
        }
    }

    /// Creates the EMA statistics once the parameter store is finalized.
    pub fn init_state(&mut self) {
        if matches!(self.update, CodebookUpdate::Ema { .. }) && self.ema.is_none() {
            self.ema = Some(EmaState::new(self.codebook.tensor()));
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
        self.codebook.shape()[0]
    }

    /// The training steps taken (seeds the restart choice); restored from checkpoints.
    pub fn steps(&self) -> u32 {
        self.step
    }

    /// Sets the step counter (when resuming).
    pub fn set_steps(&mut self, step: u32) {
        self.step = step;
    }

    /// Quantizes z [B, D, H, W]. With `train`, an EMA codebook is updated from this batch (after
    /// z_q is taken from the current codebook, as in the reference) and dead codes are restarted.
    pub fn forward(&mut self, z: &Tensor, train: bool) -> Quantized {
        let k = self.codes();
        let codebook = self.codebook.tensor();
        let codes = vq::nearest_codes(&z.detach(), &codebook.detach());
        let ema_mode = matches!(self.update, CodebookUpdate::Ema { .. });
        // in EMA mode the codebook takes no gradient
        let gathered = if ema_mode {
            vq::gather_codes(&codes, &codebook.detach())
        } else {
            vq::gather_codes(&codes, codebook)
        };
        let commitment = reduce::mse_loss(z, &gathered.detach()).scale(self.beta);
        let loss = if ema_mode {
            commitment
        } else {
            reduce::mse_loss(&gathered, &z.detach()).add(&commitment)
        };
        let z_q = vq::straight_through(z, &gathered);
        let (counts, sums) = ema::code_sums(&codes, &z.detach(), k);
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
                ema::ema_update(codebook, state, &counts, &sums, config);
                if let Some(after) = restart_after {
                    let flags =
                        ema::restart_dead(codebook, state, &counts, &z.detach(), after, self.step);
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
