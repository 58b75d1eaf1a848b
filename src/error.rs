//! One error type for every failure a user can act on.

use thiserror::Error;

/// Every user-facing failure of vqgpu, each with a message that says what to do.
#[derive(Debug, Error)]
pub enum Error {
    /// No GPU adapter at all was found for the requested backends.
    #[error("no GPU adapter found for {backends}. {hint}")]
    NoAdapter {
        /// The backends that were searched, by name.
        backends: String,
        /// What to do about it for those backends.
        hint: String,
    },
    /// An adapter name filter (`--adapter` / `VQGPU_ADAPTER`) matched nothing.
    #[error("no GPU adapter matches {wanted:?}; available: {available}. Run `vqgpu info` to list adapters")]
    AdapterNotFound {
        /// The requested substring.
        wanted: String,
        /// Names of the adapters that exist.
        available: String,
    },
    /// The backend name given on the command line is unknown.
    #[error("unknown backend {0:?}: use one of vulkan, metal, dx12, gl")]
    UnknownBackend(String),
    /// The adapter refused to create a device.
    #[error("could not open the GPU device: {0}")]
    RequestDevice(String),
    /// A buffer larger than the adapter allows was requested.
    #[error(
        "a buffer of {requested} bytes exceeds this adapter's limit of {limit} bytes ({which}); \
         use a smaller batch or model"
    )]
    BufferTooLarge {
        /// Requested size in bytes.
        requested: u64,
        /// The adapter's limit in bytes.
        limit: u64,
        /// Which limit was hit.
        which: &'static str,
    },
    /// The GPU reported a validation error, ran out of memory or was lost.
    #[error("GPU error: {0}")]
    Gpu(String),
    /// Reading a result back from the GPU failed.
    #[error("reading back from the GPU failed: {0}")]
    Readback(String),
    /// Data handed to a tensor does not match its shape.
    #[error("shape {shape:?} needs {expected} values, got {got}")]
    ShapeData {
        /// The requested shape.
        shape: Vec<usize>,
        /// Number of elements the shape holds.
        expected: usize,
        /// Number of values supplied.
        got: usize,
    },
    /// An argument a user supplied is out of range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A setting of a model, a run or a command is out of range. The library names the setting by
    /// what it is; the command line names its flag instead.
    #[error("invalid argument: {} {problem}", setting.describe())]
    InvalidSetting {
        /// Which setting.
        setting: Setting,
        /// What is wrong with its value (`must be at least 1, got 0`).
        problem: String,
    },
    /// Training produced a loss that is not a finite number.
    #[error("the loss became {loss} at step {step}: lower the learning rate")]
    Diverged {
        /// The step whose metrics showed it.
        step: u64,
        /// The loss read back.
        loss: f64,
    },
    /// A training run was asked to stop (Ctrl-C) and saved where it stopped.
    #[error("stopped at step {step} as asked; the run is saved in {dir}: continue it with --resume {dir}")]
    Interrupted {
        /// The last step trained and saved.
        step: u64,
        /// The run's directory.
        dir: String,
    },
    /// A model about to be saved holds a value that is not a finite number.
    #[error("training diverged by step {step}: {tensor} holds {value}; the checkpoint of the last save is kept (lower the learning rate)")]
    DivergedModel {
        /// The step that was to be saved.
        step: u64,
        /// The first tensor holding such a value.
        tensor: String,
        /// The value.
        value: f32,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        source: std::io::Error,
    },
    /// A dataset file is missing, truncated or malformed.
    #[error("dataset: {0}")]
    Dataset(String),
    /// A checkpoint or code file (both safetensors) is malformed or belongs to another model.
    #[error("{path}: {message}")]
    Checkpoint {
        /// The file.
        path: String,
        /// What is wrong with it.
        message: String,
    },
}

/// The settings a user chooses, named for error messages. The command line maps each to its flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setting {
    /// Total training steps.
    Steps,
    /// Items per training step or per forward pass.
    Batch,
    /// Adam's learning rate.
    LearningRate,
    /// Channels of the conv trunk.
    Hidden,
    /// Channels inside a residual layer.
    ResHidden,
    /// Codebook size K.
    CodebookSize,
    /// Code dimension D.
    CodeDim,
    /// The VQ-VAE's commitment weight.
    Commitment,
    /// Size of an autoencoder's latent (channels or vector length).
    LatentSize,
    /// A denoising autoencoder's masking probability.
    MaskProb,
    /// A denoising autoencoder's noise standard deviation.
    NoiseStd,
    /// A VAE's KL weight.
    KlWeight,
    /// Channels of the prior's stacks.
    Channels,
    /// Gated layers of the prior.
    Layers,
    /// Side of the prior's masked kernels.
    Kernel,
    /// Channels of the prior's output head.
    Head,
    /// The class of conditional samples.
    Class,
    /// Number of samples or images drawn.
    Count,
    /// Sampling temperature.
    Temperature,
    /// Side of a latent-map grid.
    Side,
    /// Sides of the code grids a sampling benchmark draws.
    SampleGrids,
    /// Side of the code grids a prior benchmark trains on.
    Grid,
    /// Grids a sampling benchmark draws at once.
    Samples,
    /// Images of each split a command reads.
    Limit,
    /// Calls per timed benchmark repeat.
    Iters,
    /// Timed benchmark repeats.
    Repeats,
    /// Independent draws of samples a score is computed on.
    Draws,
}

impl Setting {
    /// Refuses a `value` of 0 for this setting.
    pub fn require_positive(self, value: u64) -> Result<()> {
        if value == 0 {
            return Err(Error::setting(self, "must be at least 1, got 0"));
        }
        Ok(())
    }

    /// What the setting is, in words.
    pub fn describe(self) -> &'static str {
        match self {
            Setting::Steps => "the number of steps",
            Setting::Batch => "the batch size",
            Setting::LearningRate => "the learning rate",
            Setting::Hidden => "the hidden size",
            Setting::ResHidden => "the residual hidden size",
            Setting::CodebookSize => "the codebook size",
            Setting::CodeDim => "the code dimension",
            Setting::Commitment => "the commitment weight",
            Setting::LatentSize => "the latent size",
            Setting::MaskProb => "the mask probability",
            Setting::NoiseStd => "the noise standard deviation",
            Setting::KlWeight => "the KL weight",
            Setting::Channels => "the number of channels",
            Setting::Layers => "the number of layers",
            Setting::Kernel => "the kernel size",
            Setting::Head => "the head size",
            Setting::Class => "the class",
            Setting::Count => "the count",
            Setting::Temperature => "the temperature",
            Setting::Side => "the grid side",
            Setting::SampleGrids => "the side of a sampled code grid",
            Setting::Grid => "the side of a training code grid",
            Setting::Samples => "the grids sampled at once",
            Setting::Limit => "the image limit",
            Setting::Iters => "the calls per repeat",
            Setting::Repeats => "the number of repeats",
            Setting::Draws => "the number of draws",
        }
    }
}

impl Error {
    /// `setting` is out of range: `problem` says how (`must be at least 1, got 0`).
    pub fn setting(setting: Setting, problem: impl Into<String>) -> Self {
        Self::InvalidSetting {
            setting,
            problem: problem.into(),
        }
    }

    /// An I/O error on `path`.
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}

/// Result type used across vqgpu.
pub type Result<T> = std::result::Result<T, Error>;
