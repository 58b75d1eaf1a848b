//! `Tensor`: an f32 array on the GPU (NCHW for images) with a shape, pooled storage and
//! autograd bookkeeping. Tensors are immutable values; ops return new tensors.

use std::cell::Cell;
use std::fmt;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};

use smallvec::{smallvec, SmallVec};

use crate::autograd;
use crate::error::{Error, Result};
use crate::gpu::{Binding, BufferArg, Gpu, PooledBuffer};
use crate::ops::elementwise;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A tensor's shape, kept inline up to five dimensions (NCHW, and the partial sums of a product
/// split along K in front of them) so that making a tensor does not allocate for it.
pub(crate) type Shape = SmallVec<[usize; 5]>;

struct TensorData {
    id: u64,
    shape: Shape,
    storage: PooledBuffer,
    /// Byte offset of element 0 inside `storage`.
    offset: u64,
    requires_grad: bool,
    /// Where backward accumulates this leaf's gradient (a parameter's slot in the flat grad buffer).
    grad_sink: Option<GradSlot>,
    /// What it is known to hold with respect to a ReLU.
    relu_mark: Cell<ReluMark>,
    gpu: Gpu,
}

/// What a tensor is known to hold with respect to a ReLU. The gradient through a ReLU is zero
/// where its output is not positive; a kernel that makes the gradient of a ReLU's output can apply
/// that mask as it stores it, and then the ReLU's backward has nothing left to do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum ReluMark {
    /// Nothing known.
    #[default]
    Unknown,
    /// The output of a ReLU (or of an op ending in one) whose backward masks the gradient by it.
    Output,
    /// A gradient already zero wherever the ReLU output with this id is not positive.
    MaskedFor(u64),
}

/// A parameter's slot in the flat gradient buffer, and whether it still holds the zeros
/// `ParamStore::zero_grad` wrote: then the backward of the op that uses the parameter may write
/// its gradient there directly instead of into a new tensor that is then added.
#[derive(Clone)]
pub(crate) struct GradSlot {
    /// The slot.
    pub tensor: Tensor,
    /// True from `zero_grad` until a gradient is written or added into the slot.
    pub zero: Rc<Cell<bool>>,
}

/// An f32 tensor on the GPU; cloning shares the same storage and identity.
#[derive(Clone)]
pub struct Tensor(Rc<TensorData>);

/// Number of elements of a shape.
pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

impl Tensor {
    fn build(
        gpu: &Gpu,
        shape: Shape,
        storage: PooledBuffer,
        offset: u64,
        requires_grad: bool,
        grad_sink: Option<GradSlot>,
    ) -> Self {
        Self(Rc::new(TensorData {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            shape,
            storage,
            offset,
            requires_grad,
            grad_sink,
            relu_mark: Cell::new(ReluMark::Unknown),
            gpu: gpu.clone(),
        }))
    }

    /// What this tensor is known to hold with respect to a ReLU.
    pub(crate) fn relu_mark(&self) -> ReluMark {
        self.0.relu_mark.get()
    }

    /// Records what this tensor holds with respect to a ReLU (its values never change, so the
    /// mark stays true).
    pub(crate) fn set_relu_mark(&self, mark: ReluMark) {
        self.0.relu_mark.set(mark);
    }

    /// A tensor with uninitialised contents (pooled storage is reused, so it holds stale values).
    pub fn uninit(gpu: &Gpu, shape: &[usize]) -> Self {
        Self::uninit_requiring_grad(gpu, shape, false)
    }

    /// [`Tensor::uninit`] with `requires_grad` set as given.
    fn uninit_requiring_grad(gpu: &Gpu, shape: &[usize], requires_grad: bool) -> Self {
        let n = numel(shape);
        assert!(
            n > 0,
            "tensors must have at least one element, got shape {shape:?}"
        );
        let storage = gpu.alloc(n as u64 * 4);
        Self::build(gpu, Shape::from(shape), storage, 0, requires_grad, None)
    }

    /// `into` (a tensor of as many elements as `shape`, such as a parameter's gradient slot)
    /// where it is given, else a new uninitialised tensor of `shape`.
    pub(crate) fn uninit_or(gpu: &Gpu, shape: &[usize], into: Option<&Tensor>) -> Self {
        match into {
            Some(t) => {
                assert_eq!(
                    t.numel(),
                    numel(shape),
                    "a result of shape {shape:?} cannot be written into {:?}",
                    t.shape()
                );
                t.clone()
            }
            None => Self::uninit(gpu, shape),
        }
    }

    /// [`Tensor::uninit_or`] for an op that records autograd where no `into` is given: the new
    /// tensor is its [`Tensor::output`]; a result written into `into` has no autograd, so
    /// `requires_grad` must then be false.
    pub(crate) fn output_or(
        gpu: &Gpu,
        shape: &[usize],
        requires_grad: bool,
        into: Option<&Tensor>,
    ) -> Self {
        match into {
            Some(_) => {
                assert!(
                    !requires_grad,
                    "a result written into a given tensor has no autograd"
                );
                Self::uninit_or(gpu, shape, into)
            }
            None => Self::output(gpu, shape, requires_grad),
        }
    }

    /// An uninitialised tensor that is the output of an op (`requires_grad` as its inputs dictate).
    pub(crate) fn output(gpu: &Gpu, shape: &[usize], requires_grad: bool) -> Self {
        Self::uninit_requiring_grad(gpu, shape, requires_grad)
    }

    /// A tensor filled with `value`.
    pub fn full(gpu: &Gpu, shape: &[usize], value: f32) -> Self {
        let t = Self::uninit(gpu, shape);
        elementwise::fill(&t, value);
        t
    }

    /// A tensor of zeros.
    pub fn zeros(gpu: &Gpu, shape: &[usize]) -> Self {
        Self::full(gpu, shape, 0.0)
    }

    /// Uploads `data` (row-major) into a new tensor of the given shape.
    pub fn from_slice(gpu: &Gpu, shape: &[usize], data: &[f32]) -> Result<Self> {
        let expected = numel(shape);
        if expected != data.len() || expected == 0 {
            return Err(Error::ShapeData {
                shape: shape.to_vec(),
                expected,
                got: data.len(),
            });
        }
        let t = Self::uninit(gpu, shape);
        t.write(data)?;
        Ok(t)
    }

    /// Overwrites the contents with `data` (after all work recorded so far).
    pub fn write(&self, data: &[f32]) -> Result<()> {
        if data.len() != self.numel() {
            return Err(Error::ShapeData {
                shape: self.shape().to_vec(),
                expected: self.numel(),
                got: data.len(),
            });
        }
        self.0
            .gpu
            .write(self.buffer(), self.0.offset, bytemuck::cast_slice(data));
        Ok(())
    }

    /// Downloads the contents (a sync point: submits recorded work and waits).
    pub fn to_vec(&self) -> Result<Vec<f32>> {
        let bytes = self
            .0
            .gpu
            .read(self.buffer(), self.0.offset, self.numel() as u64 * 4)?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    /// Downloads a one-element tensor as a number.
    pub fn item(&self) -> Result<f32> {
        Ok(self.to_vec()?[0])
    }

    /// A view of `shape` at element `offset` of this tensor's storage (for flat parameter buffers).
    /// The offset must be a multiple of 64 elements (256 bytes, the largest binding alignment).
    pub(crate) fn view(
        &self,
        offset: usize,
        shape: &[usize],
        grad_sink: Option<GradSlot>,
    ) -> Tensor {
        assert!(
            offset.is_multiple_of(64),
            "views must start on a 256-byte boundary"
        );
        assert!(offset + numel(shape) <= self.numel(), "view out of range");
        Self::build(
            &self.0.gpu,
            Shape::from(shape),
            self.0.storage.clone(),
            self.0.offset + offset as u64 * 4,
            grad_sink.is_some(),
            grad_sink,
        )
    }

    /// Unique identity of this tensor (views and detached copies get new ones).
    pub fn id(&self) -> u64 {
        self.0.id
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.0.shape
    }

    /// Size of dimension `dim`.
    pub fn dim(&self, dim: usize) -> usize {
        self.0.shape[dim]
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        numel(&self.0.shape)
    }

    /// The GPU this tensor lives on.
    pub fn gpu(&self) -> &Gpu {
        &self.0.gpu
    }

    /// Whether gradients flow to this tensor.
    pub fn requires_grad(&self) -> bool {
        self.0.requires_grad
    }

    /// The parameter gradient slot backward accumulates into, if this is a parameter.
    pub(crate) fn grad_sink(&self) -> Option<&GradSlot> {
        self.0.grad_sink.as_ref()
    }

    /// The same storage as a new leaf that does (or does not) require gradients.
    pub fn with_requires_grad(&self, requires_grad: bool) -> Tensor {
        Self::build(
            &self.0.gpu,
            self.0.shape.clone(),
            self.0.storage.clone(),
            self.0.offset,
            requires_grad,
            None,
        )
    }

    /// This tensor as the output of an op whose inputs need gradients when `requires_grad`: a
    /// new handle to the same storage that requires gradients, or else this tensor as it is.
    pub(crate) fn requiring_grad_if(self, requires_grad: bool) -> Tensor {
        if requires_grad {
            self.with_requires_grad(true)
        } else {
            self
        }
    }

    /// Stop-gradient: the same values, cut from the graph.
    pub fn detach(&self) -> Tensor {
        self.with_requires_grad(false)
    }

    /// The same storage with another shape of equal size; gradients flow through.
    pub fn reshape(&self, shape: &[usize]) -> Tensor {
        assert_eq!(
            numel(shape),
            self.numel(),
            "cannot reshape {:?} into {shape:?}",
            self.shape()
        );
        let requires_grad = autograd::needs_grad(&[self]);
        let out = Self::build(
            &self.0.gpu,
            Shape::from(shape),
            self.0.storage.clone(),
            self.0.offset,
            requires_grad,
            None,
        );
        if requires_grad {
            let original = self.0.shape.clone();
            autograd::record(&[self], &out, move |g| {
                smallvec![Some(g.reshape(&original))]
            });
        }
        out
    }

    fn buffer(&self) -> &wgpu::Buffer {
        self.0.storage.buffer()
    }

    /// Binds this tensor to `binding` of a kernel, with the access the shader declares.
    pub(crate) fn bind(&self, binding: Binding) -> BufferArg<'_> {
        BufferArg {
            binding,
            buffer: self.buffer(),
            offset: self.0.offset,
            size: self.numel() as u64 * 4,
        }
    }

    /// [`Tensor::bind`] with the size rounded up to whole vec4 (16 bytes), for a kernel that reads
    /// the tensor as `array<vec4<f32>>`; the extra elements, if any, are read and ignored.
    pub(crate) fn bind_vec4(&self, binding: Binding) -> BufferArg<'_> {
        let size = (self.numel() as u64 * 4).div_ceil(16) * 16;
        let room = self.buffer().size() - self.0.offset;
        assert!(
            size <= room,
            "a vec4 binding needs 16-byte room at the end of its buffer"
        );
        BufferArg {
            size,
            ..self.bind(binding)
        }
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Tensor(id={}, shape={:?}, requires_grad={})",
            self.id(),
            self.shape(),
            self.requires_grad()
        )
    }
}

/// Bytes on the GPU, packed four to a 32-bit word (little-endian): a batch of u8 images as it is
/// uploaded, before a kernel turns it into model inputs.
pub struct ByteBuffer {
    storage: PooledBuffer,
    len: usize,
    gpu: Gpu,
}

impl ByteBuffer {
    /// Room for `len` bytes (at least one).
    pub fn new(gpu: &Gpu, len: usize) -> Self {
        assert!(len > 0, "a byte buffer holds at least one byte");
        Self {
            storage: gpu.alloc(len.div_ceil(4) as u64 * 4),
            len,
            gpu: gpu.clone(),
        }
    }

    /// Number of bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds no bytes (never: see [`ByteBuffer::new`]).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Overwrites the contents with `data` (after all work recorded so far).
    pub fn write(&self, data: &[u8]) -> Result<()> {
        if data.len() != self.len {
            return Err(Error::ShapeData {
                shape: vec![self.len],
                expected: self.len,
                got: data.len(),
            });
        }
        // uploads come in whole words: the last partial word is padded with zeros
        let whole = data.len() / 4 * 4;
        let buffer = self.storage.buffer();
        if whole > 0 {
            self.gpu.write(buffer, 0, &data[..whole]);
        }
        if whole < data.len() {
            let mut last = [0u8; 4];
            last[..data.len() - whole].copy_from_slice(&data[whole..]);
            self.gpu.write(buffer, whole as u64, &last);
        }
        Ok(())
    }

    /// Binds the words to `binding` of a kernel.
    pub(crate) fn bind(&self, binding: Binding) -> BufferArg<'_> {
        BufferArg {
            binding,
            buffer: self.storage.buffer(),
            offset: 0,
            size: self.len.div_ceil(4) as u64 * 4,
        }
    }
}
