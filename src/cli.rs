//! Part of the `vqgpu` binary, not of the library: the arguments of the commands (each flag
//! declared once, in `cli/groups.rs` where several commands share it), the defaults that differ by
//! command, the conversion of arguments into the library's options, and the flag names of library
//! errors.

mod bench;
mod commands;
mod groups;
#[cfg(test)]
mod parsing_tests;
mod resume;
mod score;

pub use bench::{BenchKernelsArgs, BenchPriorArgs, BenchQuantizerArgs, BenchVqVaeArgs};
pub use commands::{
    EncodeArgs, EvalPriorArgs, LatentMapArgs, PipelineArgs, ReconstructArgs, SampleArgs,
    TrainAeArgs, TrainPriorArgs, TrainVqVaeArgs,
};
pub use groups::EvalArgs;
pub use resume::resume_flags;
pub use score::{EvalClassifierArgs, EvalSamplesArgs, SamplesTask, TrainClassifierArgs};

use vqgpu::error::Setting;
use vqgpu::tasks::pipeline::{PipelineOptions, Preset};
use vqgpu::Error;

/// The command line with the defaults that differ by command: each flag is declared once with one
/// default; the pipeline's sizes, batches, steps and learning rate come from `preset`.
fn with_defaults(cli: clap::Command, preset: Preset) -> clap::Command {
    let set = |c: clap::Command, values: Vec<(&'static str, String)>| {
        values
            .into_iter()
            .fold(c, |c, (id, v)| c.mut_arg(id, |a| a.default_value(v)))
    };
    let p = PipelineOptions::preset(preset);
    let pipeline = vec![
        ("vqvae_steps", p.vqvae_steps.to_string()),
        ("encode_limit", p.encode_limit.to_string()),
        ("prior_steps", p.prior_steps.to_string()),
        ("hidden", p.vqvae.hidden.to_string()),
        ("res_hidden", p.vqvae.res_hidden.to_string()),
        ("res_layers", p.vqvae.res_layers.to_string()),
        ("codebook_size", p.vqvae.codebook_size.to_string()),
        ("code_dim", p.vqvae.code_dim.to_string()),
        ("channels", p.prior.channels.to_string()),
        ("layers", p.prior.layers.to_string()),
        ("kernel", p.prior.kernel.to_string()),
        ("head", p.prior.head.to_string()),
        ("vqvae_batch", p.vqvae_batch.to_string()),
        ("prior_batch", p.prior_batch.to_string()),
        ("lr", p.lr.to_string()),
        ("lr_schedule", p.lr_schedule.name().to_string()),
        ("prior_lr", p.prior_lr.to_string()),
        ("prior_lr_schedule", p.prior_lr_schedule.name().to_string()),
    ];
    let prior = vec![
        ("steps", "2000".to_string()),
        ("log_every", "100".to_string()),
    ];
    cli.mut_subcommand("pipeline", |c| prefix_model_flags(set(c, pipeline)))
        .mut_subcommand("bench", |c| {
            c.mut_subcommand("quantizer", |c| set(c, vec![("iters", "10".into())]))
        })
        .mut_subcommand("train", |c| c.mut_subcommand("prior", |c| set(c, prior)))
}

/// The command line for `args`: [`with_defaults`] with the preset `pipeline` is given (read before
/// parsing, so that `pipeline --preset gpu --help` shows that preset's defaults; clap still checks
/// the value).
pub fn command_line(cli: clap::Command, args: &[String]) -> clap::Command {
    let preset = args.iter().position(|a| a == "pipeline").and_then(|at| {
        let rest = &args[at + 1..];
        rest.iter().enumerate().find_map(|(i, a)| match a.as_str() {
            "--preset" => rest.get(i + 1).map(String::as_str),
            _ => a.strip_prefix("--preset="),
        })
    });
    let preset = match preset {
        Some("gpu") => Preset::Gpu,
        _ => Preset::Cpu,
    };
    with_defaults(cli, preset)
}

/// The pipeline trains two models: their size flags are prefixed (`--vqvae-hidden`,
/// `--prior-channels`) so that each says which model it sizes.
fn prefix_model_flags(pipeline: clap::Command) -> clap::Command {
    let vqvae = [
        "hidden",
        "res_hidden",
        "res_layers",
        "codebook_size",
        "code_dim",
        "beta",
        "quantizer",
        "restart_dead_codes",
    ];
    let prior = [
        "channels",
        "layers",
        "kernel",
        "head",
        "attention_every",
        "heads",
    ];
    let rename = |c: clap::Command, model: &str, id: &'static str| {
        let long = format!("{model}-{}", id.replace('_', "-"));
        c.mut_arg(id, |a| a.long(long))
    };
    let c = vqvae
        .into_iter()
        .fold(pipeline, |c, id| rename(c, "vqvae", id));
    prior.into_iter().fold(c, |c, id| rename(c, "prior", id))
}

/// The flag a user sets for `setting`.
fn flag(setting: Setting) -> &'static str {
    match setting {
        Setting::Steps => "--steps",
        Setting::Batch => "--batch",
        Setting::LearningRate => "--lr",
        Setting::Hidden => "--hidden",
        Setting::ResHidden => "--res-hidden",
        Setting::CodebookSize => "--codebook-size",
        Setting::CodeDim => "--code-dim",
        Setting::Commitment | Setting::KlWeight => "--beta",
        Setting::LatentSize => "--latent-channels / --latent-dim",
        Setting::MaskProb => "--mask-prob",
        Setting::NoiseStd => "--noise-std",
        Setting::Channels => "--channels",
        Setting::Layers => "--layers",
        Setting::Kernel => "--kernel",
        Setting::Head => "--head",
        Setting::Class => "--class",
        Setting::Count => "--count",
        Setting::Temperature => "--temperature",
        Setting::Side => "--side",
        Setting::SampleGrids => "--sample-grids",
        Setting::Grid => "--grid",
        Setting::Samples => "--samples",
        Setting::Limit => "--limit",
        Setting::Iters => "--iters",
        Setting::Repeats => "--repeats",
        Setting::Draws => "--draws",
    }
}

/// The flag `pipeline` names `setting` by, where it differs from the other commands' (its model
/// flags are prefixed, see [`with_defaults`]).
fn pipeline_flag(setting: Setting) -> Option<&'static str> {
    Some(match setting {
        Setting::Steps => "--vqvae-steps / --prior-steps",
        Setting::Batch => "--vqvae-batch / --prior-batch",
        Setting::Limit => "--encode-limit",
        Setting::Hidden => "--vqvae-hidden",
        Setting::ResHidden => "--vqvae-res-hidden",
        Setting::CodebookSize => "--vqvae-codebook-size",
        Setting::CodeDim => "--vqvae-code-dim",
        Setting::Commitment => "--vqvae-beta",
        Setting::Channels => "--prior-channels",
        Setting::Layers => "--prior-layers",
        Setting::Kernel => "--prior-kernel",
        Setting::Head => "--prior-head",
        _ => return None,
    })
}

/// An error as the command line reports it: settings by their flags (as `pipeline` names them
/// when the command is `pipeline`).
pub fn message(e: &Error, pipeline: bool) -> String {
    match e {
        Error::InvalidSetting { setting, problem } => {
            let name = pipeline
                .then(|| pipeline_flag(*setting))
                .flatten()
                .unwrap_or_else(|| flag(*setting));
            format!("invalid argument: {name} {problem}")
        }
        Error::Diverged { step, loss } => {
            format!("the loss became {loss} at step {step}: lower --lr")
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_errors_name_the_flag_on_the_command_line() {
        let e = Error::setting(Setting::CodebookSize, "must be in 1..=65535, got 0");
        assert_eq!(
            message(&e, false),
            "invalid argument: --codebook-size must be in 1..=65535, got 0"
        );
        assert_eq!(
            message(&e, true),
            "invalid argument: --vqvae-codebook-size must be in 1..=65535, got 0"
        );
        assert!(!e.to_string().contains("--"), "{e}");
        // `encode --limit` is `pipeline --encode-limit`
        let e = Error::setting(Setting::Limit, "must be at least 1");
        assert_eq!(
            message(&e, false),
            "invalid argument: --limit must be at least 1"
        );
        assert_eq!(
            message(&e, true),
            "invalid argument: --encode-limit must be at least 1"
        );
        let e = Error::setting(Setting::Steps, "must be at least 1, got 0");
        assert!(message(&e, true).contains("--vqvae-steps / --prior-steps must"));
        // `bench prior`'s own flags, not those of `sample` (--count) or of a code file
        for (setting, flag) in [(Setting::Samples, "--samples"), (Setting::Grid, "--grid")] {
            let e = Error::setting(setting, "must be at least 1, got 0");
            assert_eq!(
                message(&e, false),
                format!("invalid argument: {flag} must be at least 1, got 0")
            );
        }
        let diverged = Error::Diverged {
            step: 7,
            loss: f64::NAN,
        };
        assert!(message(&diverged, false).ends_with("lower --lr"));
        assert!(!diverged.to_string().contains("--"), "{diverged}");
    }
}
