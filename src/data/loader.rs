//! Batches prepared on a background thread while the GPU works. The batch of step s is a pure
//! function of (seed, s): positions s*B .. (s+1)*B of an endless stream of per-epoch permutations,
//! each drawn from (seed, epoch). Resuming at step s therefore needs no saved RNG stream.

use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::{to_input, CodeGrids, Dataset};

/// What batches are drawn from: items of one size, with optional labels. Image datasets give
/// their images as bytes (the GPU turns them into model inputs); code files give their code
/// grids as values.
pub trait Source: Send + Sync {
    /// One value of an item: `u8` for images, `f32` for codes.
    type Element: bytemuck::Pod + Send;
    /// Number of items.
    fn items(&self) -> usize;
    /// Values per item.
    fn item_len(&self) -> usize;
    /// Writes item `index` into `out` (`item_len` values).
    fn write_item(&self, index: usize, out: &mut [Self::Element]);
    /// The class of item `index`, where there are labels.
    fn item_label(&self, index: usize) -> Option<u32>;
}

impl<D: Dataset + ?Sized> Source for D {
    type Element = u8;

    fn items(&self) -> usize {
        self.len()
    }

    fn item_len(&self) -> usize {
        self.image_shape().iter().product()
    }

    fn write_item(&self, index: usize, out: &mut [u8]) {
        self.image(index, out);
    }

    fn item_label(&self, index: usize) -> Option<u32> {
        self.label(index)
    }
}

impl Source for CodeGrids {
    type Element = f32;

    fn items(&self) -> usize {
        self.len
    }

    /// A grid's codes, followed by its condition grid's where it has one.
    fn item_len(&self) -> usize {
        self.positions() + self.condition.as_ref().map_or(0, |c| c.positions())
    }

    fn write_item(&self, index: usize, out: &mut [f32]) {
        let (codes, condition) = out.split_at_mut(self.positions());
        codes.copy_from_slice(self.grid_codes(index));
        if let Some(c) = &self.condition {
            condition.copy_from_slice(c.grid_codes(index));
        }
    }

    fn item_label(&self, index: usize) -> Option<u32> {
        self.labels.as_ref().map(|l| l[index])
    }
}

/// One batch of items: `Batch<u8>` of images, `Batch<f32>` of code grids.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch<T> {
    /// The step this batch belongs to.
    pub step: u64,
    /// The items one after another ([B, C, H, W] image bytes, or [B, H, W] codes).
    pub inputs: Vec<T>,
    /// One label per item where the source has them.
    pub labels: Vec<u32>,
}

impl Batch<u8> {
    /// The images as model inputs in [-0.5, 0.5], on the host (see [`to_input`]).
    pub fn image_inputs(&self) -> Vec<f32> {
        let mut values = vec![0.0; self.inputs.len()];
        to_input(&self.inputs, &mut values);
        values
    }
}

/// The batch type of a source.
pub type BatchOf<S> = Batch<<S as Source>::Element>;

impl<T: bytemuck::Pod> Batch<T> {
    /// Items `indices` of `data` as the batch of `step`.
    pub fn gather<S: Source<Element = T> + ?Sized>(data: &S, indices: &[usize], step: u64) -> Self {
        let per_item = data.item_len();
        let mut inputs = vec![T::zeroed(); indices.len() * per_item];
        for (slot, &index) in indices.iter().enumerate() {
            data.write_item(index, &mut inputs[slot * per_item..(slot + 1) * per_item]);
        }
        Self {
            step,
            inputs,
            labels: indices.iter().filter_map(|&i| data.item_label(i)).collect(),
        }
    }

    /// The batch of `step` drawn from `data` (see [`batch_indices`]).
    pub fn of_step<S: Source<Element = T> + ?Sized>(
        data: &S,
        batch: usize,
        seed: u64,
        step: u64,
    ) -> Self {
        Self::gather(data, &batch_indices(data.items(), batch, seed, step), step)
    }
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
fn indices_with(
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
pub struct Loader<T> {
    rx: Receiver<Batch<T>>,
    handle: Option<JoinHandle<()>>,
}

impl<T: bytemuck::Pod + Send> Loader<T> {
    /// Starts preparing batches of `batch` items of `data` (two ahead of the consumer).
    pub fn new<S: Source<Element = T> + ?Sized + 'static>(
        data: Arc<S>,
        batch: usize,
        seed: u64,
        start: u64,
        end: u64,
    ) -> Self {
        let (tx, rx) = sync_channel(2);
        let handle = std::thread::spawn(move || {
            let mut cache = None;
            for step in start..end {
                let indices = indices_with(&mut cache, data.items(), batch, seed, step);
                if tx
                    .send(Batch::gather(data.as_ref(), &indices, step))
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
    pub fn next_batch(&mut self) -> Option<Batch<T>> {
        self.rx.recv().ok()
    }
}

impl<T> Drop for Loader<T> {
    fn drop(&mut self) {
        // unblock the producer, then wait for it
        let (_, dead) = sync_channel(1);
        drop(std::mem::replace(&mut self.rx, dead));
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
