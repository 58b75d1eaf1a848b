//! Reverse-mode autograd with a tape. Ops whose inputs require gradients append a node (inputs,
//! output id, backward closure); [`Tensor::backward`] replays the tape in reverse. Each thread has
//! its own tape. Gradients of parameters are accumulated into their slots of the flat gradient
//! buffer; an op recorded with [`record_into`] may write a parameter's first gradient of a pass
//! straight into its (still zero) slot, and may add an input's gradient so far to its own as it
//! stores it, each of which saves a tensor and the launch that adds it.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};

use smallvec::SmallVec;

use crate::gpu::profile;
use crate::ops::elementwise;
use crate::tensor::{GradSlot, Tensor};

/// Tensors, gradients or gradient slots of one node's inputs: kept inline for up to four inputs,
/// so that recording an op and running its backward do not allocate for them.
type PerInput<T> = SmallVec<[T; 4]>;

/// One optional gradient per input of an op, as its backward returns them.
pub(crate) type Grads = PerInput<Option<Tensor>>;

/// Maps the output gradient to one optional gradient per input; the slice holds, per input, what
/// autograd offers for its gradient.
type BackwardFn = Box<dyn FnOnce(&Tensor, &mut [Offer]) -> Grads>;

/// What autograd offers a node's backward for the gradient of one of its inputs.
pub(crate) struct Offer {
    /// A parameter's gradient slot while it holds zeros: a backward that writes the input's
    /// gradient there returns the slot itself.
    pub slot: Option<Tensor>,
    /// The input's gradient so far, from the ops recorded after this one: a backward that takes
    /// it (leaving `None`) returns `pending + its own gradient`, the sum autograd would make.
    pub pending: Option<Tensor>,
    /// Whether `pending` was offered.
    offered_pending: bool,
}

impl Offer {
    /// Whether the backward took the pending gradient.
    fn took_pending(&self) -> bool {
        self.offered_pending && self.pending.is_none()
    }
}

struct Node {
    inputs: PerInput<Tensor>,
    output: u64,
    backward: BackwardFn,
    /// The layer that recorded it (profiles group its backward kernels under it).
    layer: Option<std::rc::Rc<str>>,
}

thread_local! {
    static TAPE: RefCell<Vec<Node>> = const { RefCell::new(Vec::new()) };
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
    /// The maps of the last backward pass, emptied, kept for the next one with their capacity.
    static BACKWARD_MAPS: RefCell<BackwardMaps> = RefCell::default();
}

/// What a backward pass tracks: the gradients of tensors the tape produced that are still to be
/// passed back, and the ids of those tensors.
#[derive(Default)]
struct BackwardMaps {
    grads: HashMap<u64, Tensor>,
    produced: HashSet<u64>,
}

/// Whether ops currently record onto the tape.
pub fn is_grad_enabled() -> bool {
    GRAD_ENABLED.with(Cell::get)
}

/// Disables recording until the guard is dropped (inference, optimizer steps).
pub fn no_grad() -> NoGradGuard {
    NoGradGuard {
        previous: GRAD_ENABLED.with(|g| g.replace(false)),
    }
}

/// Restores the previous grad mode when dropped.
pub struct NoGradGuard {
    previous: bool,
}

impl Drop for NoGradGuard {
    fn drop(&mut self) {
        GRAD_ENABLED.with(|g| g.set(self.previous));
    }
}

/// Whether an op on `inputs` must record a backward: grad mode on and any input requiring grads.
pub(crate) fn needs_grad(inputs: &[&Tensor]) -> bool {
    is_grad_enabled() && inputs.iter().any(|t| t.requires_grad())
}

/// Appends a node; `backward` maps the output gradient to one optional gradient per input.
pub(crate) fn record(
    inputs: &[&Tensor],
    output: &Tensor,
    backward: impl FnOnce(&Tensor) -> Grads + 'static,
) {
    record_into(inputs, output, move |g, _| backward(g));
}

/// [`record`] for an op whose backward can write gradients into given tensors or add to them: its
/// second argument offers, per input, an [`Offer`]. Returning the offered slot itself as the
/// gradient says it was written there; returning a gradient after taking the pending one says it
/// holds their sum; anything else is added as usual.
pub(crate) fn record_into(
    inputs: &[&Tensor],
    output: &Tensor,
    backward: impl FnOnce(&Tensor, &mut [Offer]) -> Grads + 'static,
) {
    TAPE.with(|tape| {
        tape.borrow_mut().push(Node {
            inputs: inputs.iter().map(|&t| t.clone()).collect(),
            output: output.id(),
            backward: Box::new(backward),
            layer: profile::current_layer(),
        })
    });
}

/// What is offered to a node's backward: each parameter input's gradient slot while it holds
/// zeros, and each input's pending gradient in `grads`, each once per tensor.
fn offers(inputs: &[Tensor], grads: &HashMap<u64, Tensor>) -> PerInput<Offer> {
    let mut offered: PerInput<Offer> = PerInput::with_capacity(inputs.len());
    for (i, input) in inputs.iter().enumerate() {
        let first = !inputs[..i].iter().any(|t| t.id() == input.id());
        let wanted = first && input.requires_grad();
        let slot = input
            .grad_sink()
            .filter(|s| wanted && s.zero.get())
            .map(|s| s.tensor.clone())
            .filter(|t| {
                !offered
                    .iter()
                    .any(|o| o.slot.as_ref().is_some_and(|o| o.id() == t.id()))
            });
        let pending = grads.get(&input.id()).filter(|_| wanted).cloned();
        offered.push(Offer {
            slot,
            offered_pending: pending.is_some(),
            pending,
        });
    }
    offered
}

/// Adds `grad` into a parameter's gradient slot, unless it is the slot itself (written by the
/// op's backward).
fn add_to_slot(slot: &GradSlot, grad: &Tensor) {
    if grad.id() != slot.tensor.id() {
        elementwise::accumulate(&slot.tensor, grad, 1.0);
    }
    slot.zero.set(false);
}

/// Drops every recorded node (e.g. after a forward pass whose result is not differentiated).
pub fn clear_tape() {
    TAPE.with(|tape| tape.borrow_mut().clear());
}

/// Number of nodes on this thread's tape.
pub fn tape_len() -> usize {
    TAPE.with(|tape| tape.borrow().len())
}

/// Gradients of leaf tensors after a backward pass.
pub struct Gradients {
    leaves: HashMap<u64, Tensor>,
}

impl Gradients {
    /// The gradient of `t` from this backward pass (for parameters: their accumulated gradient slot).
    pub fn get(&self, t: &Tensor) -> Option<Tensor> {
        self.leaves
            .get(&t.id())
            .cloned()
            .or_else(|| t.grad_sink().map(|s| s.tensor.clone()))
    }
}

fn accumulate(grads: &mut HashMap<u64, Tensor>, id: u64, g: Tensor) {
    let sum = match grads.remove(&id) {
        Some(previous) => elementwise::add(&previous, &g),
        None => g,
    };
    grads.insert(id, sum);
}

impl Tensor {
    /// Back-propagates from this tensor (seeded with ones), consuming the tape. Parameter gradients
    /// are added into the flat gradient buffer; other leaves' gradients are returned.
    pub fn backward(&self) -> Gradients {
        let _no_grad = no_grad();
        let _backward = profile::backward_of(None);
        let mut nodes = TAPE.with(|tape| std::mem::take(&mut *tape.borrow_mut()));
        let BackwardMaps {
            mut grads,
            mut produced,
        } = BACKWARD_MAPS.with(|maps| std::mem::take(&mut *maps.borrow_mut()));
        grads.insert(self.id(), Tensor::full(self.gpu(), self.shape(), 1.0));
        let mut leaves = HashMap::new();
        produced.extend(nodes.iter().map(|n| n.output));
        for node in nodes.drain(..).rev() {
            let Some(g) = grads.remove(&node.output) else {
                continue;
            };
            let mut offered = offers(&node.inputs, &grads);
            let input_grads = {
                let _layer = profile::backward_of(node.layer);
                (node.backward)(&g, &mut offered)
            };
            debug_assert_eq!(input_grads.len(), node.inputs.len());
            for ((input, grad), offer) in node.inputs.iter().zip(input_grads).zip(&offered) {
                let Some(grad) = grad else { continue };
                if !input.requires_grad() {
                    continue;
                }
                if offer.took_pending() {
                    // the pending gradient is already added in
                    grads.insert(input.id(), grad);
                } else if produced.contains(&input.id()) {
                    accumulate(&mut grads, input.id(), grad);
                } else if let Some(slot) = input.grad_sink() {
                    add_to_slot(slot, &grad);
                } else {
                    accumulate(&mut leaves, input.id(), grad);
                }
            }
        }
        // the emptied tape goes back with its capacity, so the next pass records without growing it
        TAPE.with(|tape| {
            let mut tape = tape.borrow_mut();
            if tape.is_empty() {
                *tape = nodes;
            }
        });
        if !produced.contains(&self.id()) && self.requires_grad() {
            if let Some(g) = grads.remove(&self.id()) {
                match self.grad_sink() {
                    Some(slot) => add_to_slot(slot, &g),
                    None => accumulate(&mut leaves, self.id(), g),
                }
            }
        }
        // gradients of produced tensors that nothing on the tape consumed end here
        grads.clear();
        produced.clear();
        BACKWARD_MAPS.with(|maps| *maps.borrow_mut() = BackwardMaps { grads, produced });
        Gradients { leaves }
    }
}
