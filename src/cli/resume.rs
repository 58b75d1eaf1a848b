//! `train ... --resume DIR`: a resumed run keeps its checkpoint's model, optimizer and data. A flag
//! given on the command line that contradicts the checkpoint is refused by name, and the dataset
//! the checkpoint records is used unless one is given (the library refuses another).

use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{ArgMatches, Command};

use vqgpu::io::checkpoint::Checkpoint;
use vqgpu::models::trained_by;
use vqgpu::nn::LrSchedule;
use vqgpu::train::{CHECKPOINT_FILE, DATASET_KEY};
use vqgpu::{Error, Result};

/// Flags a resumed run may set freely: how long, how often, where, on which adapter; and the data
/// (with a prior's code level), which the library checks against what the checkpoint records.
const FREE_ON_RESUME: &[&str] = &[
    "steps",
    "out",
    "resume",
    "log_every",
    "save_every",
    "sample_every",
    "overwrite",
    "eval_grids",
    "adapter",
    "backend",
    "dataset",
    "data",
    "image_size",
    "codes",
    "level",
];

/// The metadata entry of a checkpoint that holds the value of flag `id`.
fn recorded(ck: &Checkpoint, id: &str) -> Option<String> {
    match id {
        "restart_dead_codes" => ck.meta("restart_after").ok().map(String::from),
        // a checkpoint written before schedules existed trained at a constant rate
        "lr_schedule" => Some(
            ck.meta(id)
                .unwrap_or(LrSchedule::default().name())
                .to_string(),
        ),
        "conditional" => {
            let classes: usize = ck.meta_parse("classes").ok()?;
            Some((classes > 0).to_string())
        }
        "condition_on_top" => {
            let codes: usize = ck.meta_parse("condition_codes").unwrap_or(0);
            Some((codes > 0).to_string())
        }
        other => ck.meta(other).ok().map(String::from),
    }
}

/// Whether a flag's value and a recorded one are the same setting (numbers compared as numbers).
fn same(given: &str, recorded: &str) -> bool {
    match (given.parse::<f64>(), recorded.parse::<f64>()) {
        (Ok(a), Ok(b)) => a == b || (a - b).abs() <= 1e-6 * a.abs().max(b.abs()),
        _ => given.eq_ignore_ascii_case(recorded),
    }
}

/// For a `train` command with `--resume DIR`: refuses every flag given on the command line that
/// contradicts DIR's checkpoint (or that a checkpoint does not record and a run cannot change),
/// and returns the flags to add so that the run uses the dataset the checkpoint records. Other
/// commands, and a checkpoint that cannot be read (the library reports why), give no flags.
pub fn resume_flags(cli: &Command, matches: &ArgMatches) -> Result<Vec<String>> {
    let Some(("train", m)) = matches.subcommand() else {
        return Ok(Vec::new());
    };
    let Some((kind, m)) = m.subcommand() else {
        return Ok(Vec::new());
    };
    // the flags of this command (argument groups have ids in the matches too)
    let flags: Vec<&str> = cli
        .find_subcommand("train")
        .and_then(|t| t.find_subcommand(kind))
        .map(|c| c.get_arguments().map(|a| a.get_id().as_str()).collect())
        .unwrap_or_default();
    let Some(dir) = m.get_one::<PathBuf>("resume") else {
        return Ok(Vec::new());
    };
    let Ok(ck) = Checkpoint::load(&dir.join(CHECKPOINT_FILE)) else {
        return Ok(Vec::new());
    };
    // another model's run: neither its flags nor its data are this command's (the library
    // refuses it, naming the command that continues it)
    if trained_by(&ck).is_some_and(|trained| trained != kind) {
        return Ok(Vec::new());
    }
    let given_here = |id: &str| m.value_source(id) == Some(ValueSource::CommandLine);
    for &id in &flags {
        if !given_here(id) || FREE_ON_RESUME.contains(&id) {
            continue;
        }
        let Ok(Some(raw)) = m.try_get_raw(id) else {
            continue;
        };
        let flag = format!("--{}", id.replace('_', "-"));
        let given: Vec<String> = raw.map(|v| v.to_string_lossy().into_owned()).collect();
        let given = given.join(",");
        match recorded(&ck, id) {
            Some(r) if same(&given, &r) => {}
            Some(r) => {
                return Err(Error::InvalidArgument(format!(
                    "{flag} {given} contradicts the run in {}, which has {r}: a resumed run keeps its checkpoint's settings; leave {flag} out",
                    dir.display()
                )))
            }
            None => {
                return Err(Error::InvalidArgument(format!(
                    "{flag} cannot be changed when resuming {}: leave it out",
                    dir.display()
                )))
            }
        }
    }
    let mut extra = Vec::new();
    let has_dataset_flag = flags.contains(&"dataset");
    if has_dataset_flag && !given_here("dataset") {
        if let Ok(dataset) = ck.meta(DATASET_KEY) {
            let (name, size) = match dataset.split_once('@') {
                Some((name, size)) => (name, Some(size)),
                None => (dataset, None),
            };
            extra.extend(["--dataset".to_string(), name.to_string()]);
            if let Some(size) = size.filter(|_| !given_here("image_size")) {
                extra.extend(["--image-size".to_string(), size.to_string()]);
            }
        }
    }
    Ok(extra)
}
