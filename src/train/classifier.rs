//! The training step of the image classifier: cross-entropy against the dataset's labels.

use std::fmt;

use crate::data::{Batch, Dataset};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::io::checkpoint::Checkpoint;
use crate::models::classifier::{Classifier, ClassifierConfig};
use crate::nn::ParamStore;
use crate::tensor::Tensor;
use crate::train::PixelInput;

use super::{
    check_fits, check_image_data, MetricSums, MetricTerms, RunState, Snapshot, StepOutput,
    TrainStep, Trainer,
};

/// The average training loss over the steps since the last read.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClassifierMetrics {
    /// The step reached.
    pub step: u64,
    /// Cross-entropy, nats per image.
    pub loss: f32,
}

impl fmt::Display for ClassifierMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "step {} cross-entropy {:.4}", self.step, self.loss)
    }
}

/// A classifier in training with its input and label buffers.
pub struct ClassifierTask {
    /// The model.
    pub model: Classifier,
    input: PixelInput,
    labels: Tensor,
}

/// A classifier with its run state.
pub type ClassifierTrainer = Trainer<ClassifierTask>;

impl ClassifierTask {
    fn new(gpu: &Gpu, model: Classifier, batch: usize) -> Result<Self> {
        let [c, h, w] = model.config.image_shape;
        // the largest activation: the first conv's output
        check_fits(gpu, batch * model.config.channels * h * w * 4)?;
        Ok(Self {
            model,
            input: PixelInput::new(gpu, &[batch, c, h, w])?,
            labels: Tensor::zeros(gpu, &[batch]),
        })
    }
}

impl ClassifierTrainer {
    /// A fresh model and optimizer.
    pub fn new(
        gpu: &Gpu,
        config: ClassifierConfig,
        seed: u64,
        lr: f32,
        batch: usize,
    ) -> Result<Self> {
        let run = RunState::new(gpu, seed, lr, batch)?;
        let model = Classifier::new(gpu, config, seed)?;
        let task = ClassifierTask::new(gpu, model, batch)?;
        Ok(Self { task, run })
    }
}

impl TrainStep for ClassifierTask {
    type Data = dyn Dataset;
    type Metrics = ClassifierMetrics;
    const METRICS_HEADER: &'static str = "step,cross_entropy,images_per_s";
    const CURVES: &'static [(usize, &'static str)] = &[(1, "cross-entropy (nats) vs step")];

    fn params(&self) -> &ParamStore {
        &self.model.params
    }

    fn check_data(&self, data: &dyn Dataset) -> Result<()> {
        check_image_data(data, self.model.config.image_shape)?;
        match data.classes() {
            Some(c) if c == self.model.config.classes => Ok(()),
            Some(c) => Err(Error::InvalidArgument(format!(
                "the dataset has {c} classes but the classifier {}",
                self.model.config.classes
            ))),
            None => Err(Error::InvalidArgument(
                "a classifier needs a dataset with labels".into(),
            )),
        }
    }

    fn forward(&mut self, batch: &Batch<u8>, _run: &RunState) -> Result<StepOutput> {
        let input = self.input.upload(&batch.inputs)?;
        let labels: Vec<f32> = batch.labels.iter().map(|&l| l as f32).collect();
        self.labels.write(&labels)?;
        Ok(StepOutput {
            loss: self.model.loss(input, &self.labels),
            metrics: MetricTerms::new(),
        })
    }

    fn metrics(&mut self, sums: &MetricSums, step: u64) -> Result<ClassifierMetrics> {
        Ok(ClassifierMetrics {
            step,
            loss: sums.mean(0, 0),
        })
    }

    fn csv_line(m: &ClassifierMetrics, rate: f64) -> String {
        format!("{},{:.6},{rate:.1}", m.step, m.loss)
    }

    fn snapshot(&self, _count: usize) -> Result<Option<Snapshot>> {
        Ok(None)
    }

    fn write_state(&self, ck: &mut Checkpoint) -> Result<()> {
        self.model.write_state(ck)
    }

    fn from_state(gpu: &Gpu, ck: &Checkpoint, run: &RunState) -> Result<Self> {
        Self::new(gpu, Classifier::from_checkpoint(gpu, ck)?, run.batch)
    }
}
