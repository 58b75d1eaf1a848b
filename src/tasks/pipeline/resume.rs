//! `pipeline --resume`: which stages of an earlier pipeline in the same directory are kept, which
//! continue from their checkpoint and which run again. A stage is kept when its run reached the
//! steps asked for and nothing before it changed; an interrupted run continues; a stage after one
//! that did any work runs again from scratch, since its run was trained on what that stage gave
//! before.

use std::path::Path;

use crate::error::Result;
use crate::io::checkpoint::Checkpoint;
use crate::train::CHECKPOINT_FILE;

use super::super::train::RunOptions;

/// What a pipeline does with one training stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Train a fresh run (over an earlier one when resuming).
    Train,
    /// Continue the run saved in the stage's directory.
    Continue,
    /// Keep the run, which reached this step.
    Kept(u64),
}

/// The stage whose run directory is `dir`, asked to reach `steps`; `stale`: a stage before it
/// did work in this pipeline.
pub fn training_stage(dir: &Path, steps: u64, stale: bool) -> Result<Stage> {
    let path = dir.join(CHECKPOINT_FILE);
    if stale || !path.exists() {
        return Ok(Stage::Train);
    }
    let step: u64 = Checkpoint::load(&path)?.meta_parse("step")?;
    Ok(if step >= steps {
        Stage::Kept(step)
    } else {
        Stage::Continue
    })
}

/// `run` (a fresh run into the stage's directory) as a resumed pipeline runs `stage`: continued
/// in its directory, or trained afresh over whatever an earlier pipeline left there.
pub fn resumed_run(run: RunOptions, stage: Stage) -> RunOptions {
    match stage {
        Stage::Continue => RunOptions {
            resume: run.out.clone(),
            out: None,
            ..run
        },
        Stage::Train | Stage::Kept(_) => RunOptions {
            overwrite: true,
            ..run
        },
    }
}
