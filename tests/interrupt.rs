//! A run asked to stop (Ctrl-C on the command line) ends after its current step, saved as at its
//! last step, and `--resume` continues it exactly. Its own test binary: the request is one for the
//! process, and would stop the other tests' runs too.

mod common;
use std::sync::Arc;

use common::*;
use vqgpu::data::{Dataset, Shapes, Split};
use vqgpu::io::checkpoint::Checkpoint;
use vqgpu::train::{self, interrupt, TrainOptions, VqVaeTrainer, CHECKPOINT_FILE, METRICS_FILE};
use vqgpu::Error;

#[test]
fn a_run_asked_to_stop_saves_its_step_and_resumes_exactly() {
    let gpu = gpu();
    let data: Arc<dyn Dataset> = Arc::new(Shapes::new(1, Split::Test));
    let new =
        || VqVaeTrainer::new(&gpu, small_vqvae(8, 16, 4), 3, 1e-3, 4, [3, 32, 32], 0.1).unwrap();
    let options = |steps, out: &std::path::Path| TrainOptions {
        log_every: 2,
        save_every: 100,
        ..test_run("shapes", steps, out)
    };
    let (straight_dir, stopped_dir) = (fresh_dir("stop", "straight"), fresh_dir("stop", "split"));
    assert!(!interrupt::request_stop(), "no run to stop yet");
    let mut straight = new();
    train::run(
        &mut straight,
        data.clone(),
        &options(6, &straight_dir),
        &mut |_, _| {},
    )
    .unwrap();
    // asked during step 2's report: step 3 is the last one trained, and it is saved
    let mut stopped = new();
    let mut reported = Vec::new();
    let err = train::run(
        &mut stopped,
        data.clone(),
        &options(6, &stopped_dir),
        &mut |step, _| {
            reported.push(step);
            if step == 2 {
                assert!(
                    interrupt::request_stop(),
                    "the running loop takes the request"
                );
                assert!(!interrupt::request_stop(), "a second request is not taken");
            }
        },
    )
    .unwrap_err();
    assert!(
        matches!(&err, Error::Interrupted { step: 3, .. }),
        "not stopped at step 3: {err}"
    );
    assert!(err.to_string().contains("--resume"), "{err}");
    assert_eq!(reported, [1, 2, 3]);
    assert!(!interrupt::request_stop(), "the request outlived its run");
    let ck = Checkpoint::load(&stopped_dir.join(CHECKPOINT_FILE)).unwrap();
    let csv = std::fs::read_to_string(stopped_dir.join(METRICS_FILE)).unwrap();
    assert!(csv.lines().last().unwrap().starts_with("3,"), "{csv}");
    // continued from the saved step, it ends where the uninterrupted run did, bit for bit
    let mut resumed = VqVaeTrainer::from_checkpoint(&gpu, &ck).unwrap();
    assert_eq!(resumed.run.step, 3);
    let continued = TrainOptions {
        resumed_from: Some(stopped_dir.clone()),
        ..options(6, &stopped_dir)
    };
    train::run(&mut resumed, data, &continued, &mut |_, _| {}).unwrap();
    let (a, b) = (
        straight.checkpoint().unwrap(),
        resumed.checkpoint().unwrap(),
    );
    assert_eq!(
        a.tensors, b.tensors,
        "the resumed run differs from the uninterrupted one"
    );
    assert_eq!(a.metadata, b.metadata);
    for dir in [straight_dir, stopped_dir] {
        std::fs::remove_dir_all(dir).ok();
    }
}
