//! The parameter store: every parameter lives in one flat buffer, gradients in another and the
//! Adam moments in two more; a parameter is an (offset, shape) view into them. Layers register
//! their parameters through a [`Scope`], which prefixes the names (`encoder.0.weight`), so two
//! instances of a module are two scopes.

use std::cell::{Cell, OnceCell};
use std::rc::Rc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::io::checkpoint::Checkpoint;
use crate::ops::elementwise;
use crate::tensor::{numel, GradSlot, Tensor};

/// Parameter offsets are rounded up to this many floats (256 bytes) so each can be bound on its own.
const ALIGN: usize = 64;

struct ParamSlot {
    name: String,
    shape: Vec<usize>,
    offset: usize,
    tensor: OnceCell<Tensor>,
}

/// A named learnable tensor; a view into the store's flat buffers once the store is finalized.
#[derive(Clone)]
pub struct Param(Rc<ParamSlot>);

impl Param {
    /// The parameter name, as in a PyTorch `state_dict` (e.g. `encoder.0.weight`).
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// The name of the layer it belongs to: the name without its last part (`encoder.0`).
    pub fn layer_name(&self) -> &str {
        self.0
            .name
            .rsplit_once('.')
            .map_or(&self.0.name, |(layer, _)| layer)
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.0.shape
    }

    /// Offset of element 0 in the flat buffers.
    pub fn offset(&self) -> usize {
        self.0.offset
    }

    /// The tensor (requires gradients; backward accumulates into its gradient slot).
    ///
    /// # Panics
    /// If the owning [`ParamStore`] was not finalized (a bug in the model's constructor).
    pub fn tensor(&self) -> &Tensor {
        self.0
            .tensor
            .get()
            .expect("ParamStore::finalize must be called before parameters are used")
    }
}

/// The four flat buffers of a finalized store.
struct Flat {
    values: Tensor,
    grads: Tensor,
    m: Tensor,
    v: Tensor,
    /// Per parameter: whether its gradient slot still holds zeros (see [`GradSlot`]).
    zero_flags: Vec<Rc<Cell<bool>>>,
}

/// Owns every parameter of a model in flat GPU buffers.
pub struct ParamStore {
    gpu: Gpu,
    rng: ChaCha8Rng,
    params: Vec<Param>,
    initial: Vec<f32>,
    flat: Option<Flat>,
    /// Why the store cannot be finalized: the first parameter past the adapter's buffer limit
    /// (its values were never allocated).
    too_large: Option<String>,
}

impl ParamStore {
    /// An empty store whose random initialisation is drawn from `seed`.
    pub fn new(gpu: &Gpu, seed: u64) -> Self {
        Self {
            gpu: gpu.clone(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            params: Vec::new(),
            initial: Vec::new(),
            flat: None,
            too_large: None,
        }
    }

    /// Whether a parameter of `shape` still fits the flat buffers (one storage binding on the
    /// adapter); if not, records why (reported by [`ParamStore::finalize`]) so that nothing is
    /// allocated for it.
    fn fits(&mut self, name: &str, shape: &[usize]) -> bool {
        if self.too_large.is_some() {
            return false;
        }
        let limit = self.gpu.max_binding_bytes();
        let total = shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .and_then(|n| n.checked_add(self.initial.len() + ALIGN))
            .and_then(|n| (n as u64).checked_mul(4));
        if total.is_some_and(|bytes| bytes <= limit) {
            return true;
        }
        self.too_large = Some(format!(
            "the model is too large: its parameters pass the adapter's limit of {} MiB for one buffer at {name} {shape:?}; choose smaller model sizes",
            limit >> 20
        ));
        false
    }

    /// The GPU the parameters live on.
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// The scope `name` at the top level: parameters registered through it are called `name.*`.
    pub fn scope(&mut self, name: impl std::fmt::Display) -> Scope<'_> {
        Scope {
            store: self,
            prefix: name.to_string(),
        }
    }

    /// Registers a parameter with explicit initial values.
    pub fn from_values(&mut self, name: &str, shape: &[usize], values: Vec<f32>) -> Param {
        assert!(
            self.flat.is_none(),
            "cannot add parameter {name} after finalize"
        );
        assert_eq!(
            values.len(),
            numel(shape),
            "initial values of {name} do not match {shape:?}"
        );
        let offset = self.initial.len().div_ceil(ALIGN) * ALIGN;
        self.initial.resize(offset, 0.0);
        self.initial.extend(values);
        self.register(name, shape, offset)
    }

    /// Adds the parameter `name` of `shape` at `offset` of the flat buffers.
    fn register(&mut self, name: &str, shape: &[usize], offset: usize) -> Param {
        let p = Param(Rc::new(ParamSlot {
            name: name.to_string(),
            shape: shape.to_vec(),
            offset,
            tensor: OnceCell::new(),
        }));
        self.params.push(p.clone());
        p
    }

    /// Registers a parameter drawn uniformly from `[-bound, bound]`.
    pub fn uniform(&mut self, name: &str, shape: &[usize], bound: f32) -> Param {
        if !self.fits(name, shape) {
            return self.unallocated(name, shape);
        }
        let values = (0..numel(shape))
            .map(|_| self.rng.random_range(-bound..=bound))
            .collect();
        self.from_values(name, shape, values)
    }

    /// Registers a parameter with PyTorch's default initialisation for weights and biases of
    /// conv and linear layers: kaiming-uniform with a = sqrt(5), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    pub fn kaiming_uniform(&mut self, name: &str, shape: &[usize], fan_in: usize) -> Param {
        self.uniform(name, shape, 1.0 / (fan_in.max(1) as f32).sqrt())
    }

    /// Registers a parameter filled with `value`.
    pub fn constant(&mut self, name: &str, shape: &[usize], value: f32) -> Param {
        if !self.fits(name, shape) {
            return self.unallocated(name, shape);
        }
        self.from_values(name, shape, vec![value; numel(shape)])
    }

    /// A parameter that did not fit: registered without values; the store cannot be finalized.
    fn unallocated(&mut self, name: &str, shape: &[usize]) -> Param {
        self.register(name, shape, 0)
    }

    /// Allocates the flat buffers, uploads initial values and zeroes gradients and moments; fails
    /// if the parameters do not fit one buffer of the adapter (nothing was allocated for them).
    pub fn finalize(&mut self) -> Result<()> {
        if self.flat.is_some() {
            return Ok(());
        }
        if let Some(why) = &self.too_large {
            return Err(Error::InvalidArgument(why.clone()));
        }
        if self.initial.is_empty() {
            return Err(Error::InvalidArgument(
                "a model needs at least one parameter".into(),
            ));
        }
        let len = self.initial.len().div_ceil(ALIGN) * ALIGN;
        self.initial.resize(len, 0.0);
        let values = Tensor::from_slice(&self.gpu, &[len], &self.initial)?;
        let zeros = || Tensor::zeros(&self.gpu, &[len]);
        let mut flat = Flat {
            values,
            grads: zeros(),
            m: zeros(),
            v: zeros(),
            zero_flags: Vec::with_capacity(self.params.len()),
        };
        let mut zero_flags = Vec::with_capacity(self.params.len());
        for p in &self.params {
            let slot = GradSlot {
                tensor: flat.grads.view(p.offset(), p.shape(), None),
                zero: Rc::new(Cell::new(true)),
            };
            zero_flags.push(slot.zero.clone());
            let view = flat.values.view(p.offset(), p.shape(), Some(slot));
            let _ = p.0.tensor.set(view);
        }
        flat.zero_flags = zero_flags;
        self.initial = Vec::new();
        self.flat = Some(flat);
        Ok(())
    }

    fn flat(&self) -> &Flat {
        self.flat
            .as_ref()
            .expect("ParamStore::finalize must be called first")
    }

    /// Every parameter in registration order.
    pub fn params(&self) -> &[Param] {
        &self.params
    }

    /// Total number of learnable values (without alignment padding).
    pub fn count(&self) -> usize {
        self.params.iter().map(|p| numel(p.shape())).sum()
    }

    /// Sets every gradient to zero (one dispatch). The next backward pass then writes a
    /// parameter's first gradient into its slot directly where the op allows it.
    pub fn zero_grad(&self) {
        let flat = self.flat();
        elementwise::fill(&flat.grads, 0.0);
        for zero in &flat.zero_flags {
            zero.set(true);
        }
    }

    /// The flat (values, grads, first moment, second moment) buffers.
    pub fn flat_buffers(&self) -> (&Tensor, &Tensor, &Tensor, &Tensor) {
        let f = self.flat();
        (&f.values, &f.grads, &f.m, &f.v)
    }

    /// Length of the flat buffers (with alignment padding).
    pub fn flat_len(&self) -> usize {
        self.flat().values.numel()
    }

    /// The gradient of one parameter (its slot in the flat gradient buffer).
    pub fn grad(&self, p: &Param) -> Tensor {
        self.flat().grads.view(p.offset(), p.shape(), None)
    }

    fn buffer(&self, which: FlatBuffer) -> &Tensor {
        let f = self.flat();
        match which {
            FlatBuffer::Values => &f.values,
            FlatBuffer::FirstMoment => &f.m,
            FlatBuffer::SecondMoment => &f.v,
        }
    }

    /// Copies every parameter's slice of one flat buffer into `ck` as `{prefix}{name}` (one read).
    pub fn save_into(&self, ck: &mut Checkpoint, which: FlatBuffer, prefix: &str) -> Result<()> {
        let flat = self.buffer(which).to_vec()?;
        for p in &self.params {
            let range = p.offset()..p.offset() + numel(p.shape());
            ck.insert(
                &format!("{prefix}{}", p.name()),
                p.shape(),
                flat[range].to_vec(),
            );
        }
        Ok(())
    }

    /// Fills one flat buffer from the tensors `{prefix}{name}` of `ck`, which must all be there
    /// with the parameters' shapes.
    pub fn load_from(&self, ck: &Checkpoint, which: FlatBuffer, prefix: &str) -> Result<()> {
        let mut flat = vec![0.0; self.flat_len()];
        for p in &self.params {
            let range = p.offset()..p.offset() + numel(p.shape());
            flat[range].copy_from_slice(ck.get(&format!("{prefix}{}", p.name()), p.shape())?);
        }
        self.buffer(which).write(&flat)
    }
}

/// A name prefix inside a [`ParamStore`]: what a layer registers through `scope.scope("conv")`
/// is called `{prefix}.conv.weight`. Parameters are drawn from the store's seeded RNG in
/// registration order, whatever their scope.
pub struct Scope<'a> {
    store: &'a mut ParamStore,
    prefix: String,
}

impl Scope<'_> {
    /// The nested scope `{prefix}.{name}`.
    pub fn scope(&mut self, name: impl std::fmt::Display) -> Scope<'_> {
        let prefix = self.name(&name.to_string());
        Scope {
            store: &mut *self.store,
            prefix,
        }
    }

    /// The prefix of every name registered here (`encoder.5.layers.0`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The full name of `name` in this scope.
    fn name(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    /// Registers `{prefix}.{name}` drawn uniformly from `[-bound, bound]`.
    pub fn uniform(&mut self, name: &str, shape: &[usize], bound: f32) -> Param {
        let name = self.name(name);
        self.store.uniform(&name, shape, bound)
    }

    /// Registers `{prefix}.{name}` with PyTorch's default initialisation for `fan_in`.
    pub fn kaiming_uniform(&mut self, name: &str, shape: &[usize], fan_in: usize) -> Param {
        let name = self.name(name);
        self.store.kaiming_uniform(&name, shape, fan_in)
    }

    /// Registers `{prefix}.{name}` filled with `value`.
    pub fn constant(&mut self, name: &str, shape: &[usize], value: f32) -> Param {
        let name = self.name(name);
        self.store.constant(&name, shape, value)
    }
}

/// One of the flat buffers a checkpoint stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlatBuffer {
    /// The parameter values.
    Values,
    /// Adam's first moments.
    FirstMoment,
    /// Adam's second moments.
    SecondMoment,
}
