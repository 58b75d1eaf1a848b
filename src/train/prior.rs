//! Training of the PixelCNN prior on code grids: cross-entropy over K codes, Adam, the NLL summed
//! on the GPU and read back only when logging, test NLL on held-out grids, exact resume.

use std::path::Path;
use std::time::Instant;

use crate::autograd;
use crate::checkpoint::Checkpoint;
use crate::data::{indices_with, CodeGrids};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::models::pixelcnn::{PixelCnn, PixelCnnConfig};
use crate::nn::Adam;
use crate::ops::{elementwise, softmax};
use crate::tensor::Tensor;

use super::{
    append_csv, check_setup, every, plot_columns, restore_run, run_settings, save_run,
    TrainOptions, CHECKPOINT_FILE, METRICS_FILE,
};

const METRICS_HEADER: &str =
    "step,train_nll_nats,train_bits_per_code,test_nll_nats,test_bits_per_code,grids_per_s";

/// Negative log-likelihoods of the prior, in nats per code.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PriorMetrics {
    /// The step reached.
    pub step: u64,
    /// Mean training NLL over the steps since the last read.
    pub train_nll: f64,
    /// NLL on (a prefix of) the test grids at this step.
    pub test_nll: f64,
}

/// Nats to bits.
pub fn bits(nats: f64) -> f64 {
    nats / std::f64::consts::LN_2
}

/// A PixelCNN prior with its optimizer, input buffers and GPU-side NLL sum.
pub struct PriorTrainer {
    /// The model.
    pub model: PixelCnn,
    /// Its optimizer.
    pub adam: Adam,
    /// Steps taken.
    pub step: u64,
    /// Seed of the initialisation and of the data order.
    pub seed: u64,
    /// Grids per step.
    pub batch: usize,
    /// (height, width) of the code grids.
    pub grid: [usize; 2],
    codes: Tensor,
    labels: Option<Tensor>,
    nll_sum: Tensor,
    steps_in_metrics: u64,
    order: Option<(u64, Vec<usize>)>,
}

/// `labels` repeated over the `positions` of each grid, as the class-bias gather wants them.
pub fn label_grid(labels: &[u32], positions: usize) -> Vec<f32> {
    labels
        .iter()
        .flat_map(|&l| std::iter::repeat_n(l as f32, positions))
        .collect()
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
        let model = PixelCnn::new(gpu, config, seed)?;
        Self::with_model(gpu, model, seed, lr, batch, grid)
    }

    fn with_model(
        gpu: &Gpu,
        model: PixelCnn,
        seed: u64,
        lr: f32,
        batch: usize,
        grid: [usize; 2],
    ) -> Result<Self> {
        let [h, w] = grid;
        // the largest activation (the logits) must fit the adapter's binding limit
        let c = &model.config;
        let largest = batch * h * w * c.codes.max(c.head).max(2 * c.channels) * 4;
        check_setup(gpu, batch, lr, largest)?;
        let labels = (model.config.classes > 0).then(|| Tensor::zeros(gpu, &[batch, h, w]));
        Ok(Self {
            adam: Adam::new(lr),
            step: 0,
            seed,
            batch,
            grid,
            codes: Tensor::zeros(gpu, &[batch, h, w]),
            labels,
            nll_sum: Tensor::zeros(gpu, &[1]),
            steps_in_metrics: 0,
            order: None,
            model,
        })
    }

    /// Checks that `data` fits the prior: grid size, codebook size, and labels for a conditional prior.
    pub fn check_data(&self, data: &CodeGrids) -> Result<()> {
        let c = &self.model.config;
        if data.grid != self.grid || data.codebook_size != c.codes {
            return Err(Error::InvalidArgument(format!(
                "the code file holds {}x{} grids of {} codes but the prior was built for {}x{} grids of {} codes",
                data.grid[0], data.grid[1], data.codebook_size, self.grid[0], self.grid[1], c.codes
            )));
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

    /// Records one training step on the grids of step `self.step` of `data` (a seeded shuffle per
    /// epoch, as for images); nothing is read back.
    pub fn train_step(&mut self, data: &CodeGrids) -> Result<()> {
        let indices = indices_with(&mut self.order, data.len, self.batch, self.seed, self.step);
        let codes: Vec<f32> = indices
            .iter()
            .flat_map(|&i| data.grid_codes(i).iter().copied())
            .collect();
        self.codes.write(&codes)?;
        if let (Some(t), Some(labels)) = (&self.labels, &data.labels) {
            let picked: Vec<u32> = indices.iter().map(|&i| labels[i]).collect();
            t.write(&label_grid(&picked, data.positions()))?;
        }
        self.model.params.zero_grad();
        let loss = self.model.loss(&self.codes, self.labels.as_ref());
        loss.backward();
        self.adam.step(&self.model.params);
        elementwise::accumulate(&self.nll_sum, &loss.detach(), 1.0);
        self.steps_in_metrics += 1;
        self.step += 1;
        Ok(())
    }

    /// Reads back and resets the mean training NLL (nats per code) since the last read.
    pub fn take_train_nll(&mut self) -> Result<Option<f64>> {
        if self.steps_in_metrics == 0 {
            return Ok(None);
        }
        let sum = self.nll_sum.item()? as f64;
        elementwise::fill(&self.nll_sum, 0.0);
        let nll = sum / self.steps_in_metrics as f64;
        self.steps_in_metrics = 0;
        if !nll.is_finite() {
            return Err(Error::InvalidArgument(format!(
                "the loss became {nll} at step {}: lower --lr",
                self.step
            )));
        }
        Ok(Some(nll))
    }

    /// Mean NLL in nats per code over the first `limit` grids of `data` (one readback).
    pub fn evaluate(&self, data: &CodeGrids, limit: usize) -> Result<f64> {
        self.check_data(data)?;
        let _no_grad = autograd::no_grad();
        let gpu = self.codes.gpu();
        let total = data.len.min(limit);
        let [h, w] = self.grid;
        let sum = Tensor::zeros(gpu, &[1]);
        for start in (0..total).step_by(self.batch) {
            let n = self.batch.min(total - start);
            let range = start * h * w..(start + n) * h * w;
            let codes = Tensor::from_slice(gpu, &[n, h, w], &data.codes[range])?;
            let labels = match (&data.labels, self.model.config.classes) {
                (Some(l), c) if c > 0 => Some(Tensor::from_slice(
                    gpu,
                    &[n, h, w],
                    &label_grid(&l[start..start + n], h * w),
                )?),
                _ => None,
            };
            let logits = self.model.forward(&codes, labels.as_ref());
            elementwise::accumulate(&sum, &softmax::cross_entropy(&logits, &codes).sum(), 1.0);
        }
        Ok(sum.item()? as f64 / (total * h * w).max(1) as f64)
    }

    /// The complete training state: the prior, the Adam moments, step, seed, batch and grid.
    pub fn checkpoint(&self) -> Result<Checkpoint> {
        let mut ck = Checkpoint::default();
        self.model.write_state(&mut ck)?;
        let (step, seed) = (self.step, self.seed);
        save_run(
            &mut ck,
            &self.adam,
            &self.model.params,
            step,
            seed,
            self.batch,
        )?;
        ck.set_dims("grid", &self.grid);
        Ok(ck)
    }

    /// Rebuilds the trainer exactly as it was when `ck` was taken.
    pub fn from_checkpoint(gpu: &Gpu, ck: &Checkpoint) -> Result<Self> {
        let model = PixelCnn::from_checkpoint(gpu, ck)?;
        let (seed, lr, batch) = run_settings(ck)?;
        let mut t = Self::with_model(gpu, model, seed, lr, batch, ck.dims("grid")?)?;
        (t.adam, t.step) = restore_run(ck, &t.model.params)?;
        Ok(t)
    }
}

/// Trains the prior on `train` until `opts.steps`, logging train NLL and the NLL of the first
/// `eval_grids` test grids every `opts.log_every` steps to `metrics.csv`, with checkpoints and a
/// plot of the curves in `opts.out`. `report` receives every logged row and the grids/s.
pub fn run_prior(
    trainer: &mut PriorTrainer,
    train: &CodeGrids,
    test: &CodeGrids,
    eval_grids: usize,
    opts: &TrainOptions,
    report: &mut dyn FnMut(&PriorMetrics, f64),
) -> Result<()> {
    trainer.check_data(train)?;
    trainer.check_data(test)?;
    std::fs::create_dir_all(&opts.out).map_err(|e| Error::io(&opts.out, e))?;
    let metrics_path = opts.out.join(METRICS_FILE);
    let checkpoint_path = opts.out.join(CHECKPOINT_FILE);
    let mut since = Instant::now();
    let mut grids = 0usize;
    while trainer.step < opts.steps {
        trainer.train_step(train)?;
        grids += trainer.batch;
        let step = trainer.step;
        let last = step == opts.steps;
        if every(opts.log_every, step) || last {
            if let Some(train_nll) = trainer.take_train_nll()? {
                let rate = grids as f64 / since.elapsed().as_secs_f64().max(1e-9);
                let test_nll = trainer.evaluate(test, eval_grids)?;
                let m = PriorMetrics {
                    step,
                    train_nll,
                    test_nll,
                };
                let line = format!(
                    "{step},{train_nll:.6},{:.6},{test_nll:.6},{:.6},{rate:.1}",
                    bits(train_nll),
                    bits(test_nll)
                );
                append_csv(&metrics_path, METRICS_HEADER, &line)?;
                report(&m, rate);
                since = Instant::now();
                grids = 0;
            }
        }
        if every(opts.save_every, step) || last {
            trainer.checkpoint()?.save(&checkpoint_path)?;
        }
    }
    plot_prior_metrics(&metrics_path, &opts.out.join("curves.png"))
}

/// Draws the train and test NLL (bits per code) of a prior's metrics CSV into a PNG.
pub fn plot_prior_metrics(csv: &Path, png: &Path) -> Result<()> {
    plot_columns(
        csv,
        png,
        &[
            (2, "train NLL (bits per code) vs step"),
            (4, "test NLL (bits per code) vs step"),
        ],
    )
}
