//! Batches prepared on a background thread while the GPU works. The batch of step s is a pure
//! function of (seed, s): positions s*B .. (s+1)*B of an endless stream of per-epoch permutations,
//! each drawn from (seed, epoch). Resuming at step s therefore needs no saved RNG stream.

use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::{to_input, Dataset};

/// One batch of model inputs.
pub struct Batch {
    /// The step this batch belongs to.
    pub step: u64,
    /// [B, C, H, W] values in [-0.5, 0.5].
    pub images: Vec<f32>,
    /// One label per image where the dataset has them.
    pub labels: Vec<u32>,
}

fn permutation(len: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ epoch.wrapping_mul(0xD1B5_4A32_D192_ED03));
    order.shuffle(&mut rng);
    order
}

/// The dataset indices of step `step`'s batch (shuffled once per epoch from `seed`).
pub fn batch_indices(len: usize, batch: usize, seed: u64, step: u64) -> Vec<usize> {
    let mut cache = None;
    indices_with(&mut cache, len, batch, seed, step)
}

/// As [`batch_indices`], reusing the permutation of the last epoch seen.
pub(crate) fn indices_with(
    cache: &mut Option<(u64, Vec<usize>)>,
    len: usize,
    batch: usize,
    seed: u64,
    step: u64,
) -> Vec<usize> {
    (0..batch as u64)
        .map(|i| {
            let position = step * batch as u64 + i;
            let epoch = position / len as u64;
            if cache.as_ref().is_none_or(|(e, _)| *e != epoch) {
                *cache = Some((epoch, permutation(len, seed, epoch)));
            }
            cache
                .as_ref()
                .map_or(0, |(_, order)| order[(position % len as u64) as usize])
        })
        .collect()
}

/// A background thread producing the batches of steps `start..end` in order.
pub struct Loader {
    rx: Receiver<Batch>,
    handle: Option<JoinHandle<()>>,
}

impl Loader {
    /// Starts preparing batches of `batch` images (two ahead of the consumer).
    pub fn new(data: Arc<dyn Dataset>, batch: usize, seed: u64, start: u64, end: u64) -> Self {
        let (tx, rx) = sync_channel(2);
        let handle = std::thread::spawn(move || {
            let [c, h, w] = data.image_shape();
            let per_image = c * h * w;
            let mut bytes = vec![0u8; per_image];
            let mut cache = None;
            for step in start..end {
                let indices = indices_with(&mut cache, data.len(), batch, seed, step);
                let mut images = vec![0.0f32; batch * per_image];
                let mut labels = Vec::with_capacity(batch);
                for (slot, &index) in indices.iter().enumerate() {
                    data.image(index, &mut bytes);
                    to_input(
                        &bytes,
                        &mut images[slot * per_image..(slot + 1) * per_image],
                    );
                    labels.extend(data.label(index));
                }
                if tx
                    .send(Batch {
                        step,
                        images,
                        labels,
                    })
                    .is_err()
                {
                    return; // the consumer stopped
                }
            }
        });
        Self {
            rx,
            handle: Some(handle),
        }
    }

    /// The next batch, or `None` after the last step.
    pub fn next_batch(&mut self) -> Option<Batch> {
        self.rx.recv().ok()
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        // unblock the producer, then wait for it
        let (_, dead) = sync_channel(1);
        drop(std::mem::replace(&mut self.rx, dead));
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
