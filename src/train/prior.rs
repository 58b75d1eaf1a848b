//! The training step of the PixelCNN prior on code grids: cross-entropy over K codes, the NLL
//! summed on the GPU, and the NLL of held-out grids at every log.

use std::fmt;
use std::sync::Arc;

use crate::autograd;
use crate::data::{Batch, CodeGrids};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::io::checkpoint::Checkpoint;
use crate::models::pixelcnn::{PixelCnn, PixelCnnConfig};
use crate::nn::ParamStore;
use crate::ops::{elementwise, softmax};
use crate::tensor::Tensor;

use super::{
    check_fits, MetricSums, MetricTerms, RunState, Snapshot, StepOutput, TrainStep, Trainer,
};

/// Negative log-likelihoods of the prior, in nats per code.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PriorMetrics {
    /// The step reached.
    pub step: u64,
    /// Mean training NLL over the steps since the last read.
    pub train_nll: f64,
    /// NLL on (a prefix of) the held-out grids at this step; NaN without held-out grids.
    pub test_nll: f64,
}

impl fmt::Display for PriorMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "step {} train NLL {:.4} nats ({:.3} bits) test {:.4} nats ({:.3} bits)",
            self.step,
            self.train_nll,
            bits(self.train_nll),
            self.test_nll,
            bits(self.test_nll)
        )
    }
}

/// Nats to bits.
pub fn bits(nats: f64) -> f64 {
    nats / std::f64::consts::LN_2
}

/// A PixelCNN prior in training: the model, its input buffers and the held-out grids.
pub struct PriorTask {
    /// The model.
    pub model: PixelCnn,
    /// (height, width) of the code grids.
    pub grid: [usize; 2],
    codes: Tensor,
    labels: Option<Tensor>,
    /// The condition grids [B, H/2, W/2] of a prior conditioned on top codes.
    condition: Option<Tensor>,
    held_out: Option<(Arc<CodeGrids>, usize)>,
}

/// A PixelCNN prior with its run state.
pub type PriorTrainer = Trainer<PriorTask>;

impl PriorTask {
    /// `model` over grids of `grid` = (height, width), `batch` grids at a time (a trainer adds
    /// the optimizer; evaluation needs none).
    pub fn new(gpu: &Gpu, model: PixelCnn, batch: usize, grid: [usize; 2]) -> Result<Self> {
        let [h, w] = grid;
        // the largest activation must fit the adapter's binding limit
        model.config.check_grid(grid)?;
        check_fits(
            gpu,
            model
                .config
                .largest_activation(batch, grid)
                .saturating_mul(4),
        )?;
        let labels = (model.config.classes > 0).then(|| Tensor::zeros(gpu, &[batch, h, w]));
        let condition =
            (model.config.condition_codes > 0).then(|| Tensor::zeros(gpu, &[batch, h / 2, w / 2]));
        Ok(Self {
            grid,
            codes: Tensor::zeros(gpu, &[batch, h, w]),
            labels,
            condition,
            held_out: None,
            model,
        })
    }

    /// Measures the NLL of the first `limit` grids of `test` at every metrics read-back.
    /// A `limit` of 0 measures none (the test NLL is left empty).
    pub fn evaluate_at_logs(&mut self, test: Arc<CodeGrids>, limit: usize) -> Result<()> {
        self.check_data(&test)?;
        self.held_out = (limit > 0).then_some((test, limit));
        Ok(())
    }

    /// Mean NLL in nats per code over the first `limit` grids of `data` (one readback).
    pub fn evaluate(&self, data: &CodeGrids, limit: usize) -> Result<f64> {
        self.evaluate_reporting(data, limit, &mut |_| {})
    }

    /// [`PriorTask::evaluate`], calling `recorded` with the number of grids submitted so far after
    /// each batch (for a progress bar).
    pub fn evaluate_reporting(
        &self,
        data: &CodeGrids,
        limit: usize,
        recorded: &mut dyn FnMut(usize),
    ) -> Result<f64> {
        self.check_data(data)?;
        let _no_grad = autograd::no_grad();
        let gpu = self.codes.gpu();
        let total = data.len.min(limit);
        if total == 0 {
            return Err(Error::InvalidArgument(
                "no test grids to measure the NLL on (an empty split or a limit of 0)".into(),
            ));
        }
        let batch = self.codes.dim(0);
        let [h, w] = self.grid;
        let sum = Tensor::zeros(gpu, &[1]);
        for start in (0..total).step_by(batch) {
            let n = batch.min(total - start);
            let range = start * h * w..(start + n) * h * w;
            let codes = Tensor::from_slice(gpu, &[n, h, w], &data.codes[range])?;
            let labels = match (&data.labels, self.model.config.classes) {
                (Some(l), c) if c > 0 => Some(Tensor::from_slice(
                    gpu,
                    &[n, h, w],
                    &PixelCnn::label_grid(&l[start..start + n], h * w),
                )?),
                _ => None,
            };
            let condition = match &data.condition {
                Some(top) if self.condition.is_some() => {
                    let n_top = top.positions();
                    let range = start * n_top..(start + n) * n_top;
                    let [th, tw] = top.grid;
                    Some(Tensor::from_slice(gpu, &[n, th, tw], &top.codes[range])?)
                }
                _ => None,
            };
            let logits =
                self.model
                    .forward_conditioned(&codes, labels.as_ref(), condition.as_ref());
            elementwise::accumulate(&sum, &softmax::cross_entropy(&logits, &codes).sum(), 1.0);
            // one batch in flight at most, so that `recorded` follows the device
            gpu.end_step();
            recorded(start + n);
        }
        Ok(sum.item()? as f64 / (total * h * w).max(1) as f64)
    }
}

impl PriorTrainer {
    /// A fresh prior and optimizer for grids of `grid` = (height, width).
    pub fn new(
        gpu: &Gpu,
        config: PixelCnnConfig,
        seed: u64,
        lr: f32,
        batch: usize,
        grid: [usize; 2],
    ) -> Result<Self> {
        let run = RunState::new(gpu, seed, lr, batch)?;
        let model = PixelCnn::new(gpu, config, seed)?;
        let task = PriorTask::new(gpu, model, batch, grid)?;
        Ok(Self { task, run })
    }
}

impl TrainStep for PriorTask {
    type Data = CodeGrids;
    type Metrics = PriorMetrics;
    const METRICS_HEADER: &'static str =
        "step,train_nll_nats,train_bits_per_code,test_nll_nats,test_bits_per_code,grids_per_s";
    const CURVES: &'static [(usize, &'static str)] = &[
        (2, "train NLL (bits per code) vs step"),
        (4, "test NLL (bits per code) vs step"),
    ];

    fn params(&self) -> &ParamStore {
        &self.model.params
    }

    /// Checks that `data` fits the prior: grid size, codebook size, and labels for a conditional prior.
    fn check_data(&self, data: &CodeGrids) -> Result<()> {
        let c = &self.model.config;
        if data.grid != self.grid || data.codebook_size != c.codes {
            return Err(Error::InvalidArgument(format!(
                "the code file holds {}x{} grids of {} codes but the prior was built for {}x{} grids of {} codes",
                data.grid[0], data.grid[1], data.codebook_size, self.grid[0], self.grid[1], c.codes
            )));
        }
        if c.condition_codes > 0 {
            let half = self.grid.map(|side| side / 2);
            match &data.condition {
                Some(top) if top.grid == half && top.codebook_size == c.condition_codes => {}
                _ => {
                    return Err(Error::InvalidArgument(format!(
                        "the prior is conditioned on {}x{} top grids of {} codes, and the code file gives it none of those",
                        half[0], half[1], c.condition_codes
                    )))
                }
            }
        }
        if c.classes > 0 && (data.labels.is_none() || data.classes > c.classes) {
            return Err(Error::InvalidArgument(format!(
                "the prior is conditional on {} classes but the code file has {}",
                c.classes,
                if data.labels.is_some() {
                    format!("{} classes", data.classes)
                } else {
                    "no labels".into()
                }
            )));
        }
        Ok(())
    }

    fn forward(&mut self, batch: &Batch<f32>, _: &RunState) -> Result<StepOutput> {
        let positions = self.grid[0] * self.grid[1];
        match &self.condition {
            None => self.codes.write(&batch.inputs)?,
            Some(condition) => {
                // each item is its grid followed by its condition grid
                let item = positions + condition.numel() / condition.dim(0);
                let (mut codes, mut top) = (Vec::new(), Vec::new());
                for chunk in batch.inputs.chunks(item) {
                    codes.extend_from_slice(&chunk[..positions]);
                    top.extend_from_slice(&chunk[positions..]);
                }
                self.codes.write(&codes)?;
                condition.write(&top)?;
            }
        }
        if let Some(t) = &self.labels {
            t.write(&PixelCnn::label_grid(&batch.labels, positions))?;
        }
        let logits = self.model.forward_conditioned(
            &self.codes,
            self.labels.as_ref(),
            self.condition.as_ref(),
        );
        Ok(StepOutput {
            loss: softmax::cross_entropy(&logits, &self.codes).mean(),
            metrics: MetricTerms::new(),
        })
    }

    fn metrics(&mut self, sums: &MetricSums, step: u64) -> Result<PriorMetrics> {
        let test_nll = match &self.held_out {
            Some((test, limit)) => self.evaluate(test, *limit)?,
            None => f64::NAN,
        };
        Ok(PriorMetrics {
            step,
            train_nll: sums.sum(0, 0) as f64 / sums.steps as f64,
            test_nll,
        })
    }

    fn csv_line(m: &PriorMetrics, rate: f64) -> String {
        format!(
            "{},{:.6},{:.6},{:.6},{:.6},{rate:.1}",
            m.step,
            m.train_nll,
            bits(m.train_nll),
            m.test_nll,
            bits(m.test_nll)
        )
    }

    fn snapshot(&self, _: usize) -> Result<Option<Snapshot>> {
        Ok(None)
    }

    fn write_state(&self, ck: &mut Checkpoint) -> Result<()> {
        self.model.write_state(ck)?;
        ck.set_dims("grid", &self.grid);
        Ok(())
    }

    fn from_state(gpu: &Gpu, ck: &Checkpoint, run: &RunState) -> Result<Self> {
        let model = PixelCnn::from_checkpoint(gpu, ck)?;
        Self::new(gpu, model, run.batch, ck.dims("grid")?)
    }
}
