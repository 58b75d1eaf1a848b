//! Copies of storage buffers in 2-D textures. The software driver loads a storage buffer element
//! by element for each lane of a workgroup, through the stack; it fetches texels of a texture
//! with vector gathers, several times faster (docs/internals.md). Kernels of the CPU kernel set
//! read their large operands from such copies: the products and the convolutions' lowering
//! (`ops::blocked`), the elementwise kernels that work by units of four elements
//! (`ops::elementwise`), Adam (`ops::adam`), the per-channel sums (`ops::reduce`) and the
//! cross-entropy gradient (`ops::softmax`).
//!
//! A slot keeps what it holds until another copy goes into it: a launch whose operand a slot
//! still holds, unchanged since (no launch has bound its buffer for writing, nothing was uploaded
//! into it, nothing was submitted), reads that slot instead of making a new copy. Each
//! submission starts with empty slots, so a repeated training step picks the same slots.

use super::{Binding, BufferArg, Gpu, Kernel, TextureArg, UniformParams};

/// Texels (one vec4 of f32 each) per row of a copy: a kernel finds texel `i` at
/// (`i % TEXELS_PER_ROW`, `i / TEXELS_PER_ROW`). `shaders/texel.wgsl` has the same figure as
/// `TEXEL_ROW_SHIFT`.
pub const TEXELS_PER_ROW: u64 = 1 << TEXEL_ROW_SHIFT;
/// log2 of [`TEXELS_PER_ROW`].
pub const TEXEL_ROW_SHIFT: u32 = 12;
/// Texture slots: at least the copies that one kernel launch reads together.
pub(super) const TEXTURE_SLOTS: usize = 4;
/// A slot's texture grows by whole multiples of this many rows (1 MiB).
const ROW_GRANULE: u32 = 16;

/// One slot's texture, its view, and what it holds.
pub(super) struct SlotTexture {
    texture: wgpu::Texture,
    view: wgpu::TextureView,
    /// The range of a buffer copied in last, while the buffer is unchanged since.
    holds: Option<CopiedRange>,
    /// [`Gpu::operand_uses`] when a launch last read the slot.
    last_read: u64,
}

/// `bytes` bytes of `buffer` from `offset`, as copied into a slot.
#[derive(PartialEq)]
struct CopiedRange {
    buffer: wgpu::Buffer,
    offset: u64,
    bytes: u64,
}

/// A copy of `texels` texels of `buffer` from byte `offset` into `texture`, row by row.
pub(super) struct TexelCopy {
    buffer: wgpu::Buffer,
    offset: u64,
    texels: u64,
    texture: wgpu::Texture,
}

impl TexelCopy {
    /// Records the copy into `encoder`: the whole rows, then what is left in one more row.
    pub(super) fn record(&self, encoder: &mut wgpu::CommandEncoder) {
        let row_bytes = TEXELS_PER_ROW * 16;
        let whole_rows = self.texels / TEXELS_PER_ROW;
        let rest = self.texels % TEXELS_PER_ROW;
        let mut copy = |from: u64, y: u64, width: u64, height: u64| {
            encoder.copy_buffer_to_texture(
                wgpu::TexelCopyBufferInfo {
                    buffer: &self.buffer,
                    layout: wgpu::TexelCopyBufferLayout {
                        offset: from,
                        bytes_per_row: Some(row_bytes as u32),
                        rows_per_image: None,
                    },
                },
                wgpu::TexelCopyTextureInfo {
                    texture: &self.texture,
                    mip_level: 0,
                    origin: wgpu::Origin3d {
                        x: 0,
                        y: y as u32,
                        z: 0,
                    },
                    aspect: wgpu::TextureAspect::All,
                },
                wgpu::Extent3d {
                    width: width as u32,
                    height: height as u32,
                    depth_or_array_layers: 1,
                },
            );
        };
        if whole_rows > 0 {
            copy(self.offset, 0, TEXELS_PER_ROW, whole_rows);
        }
        if rest > 0 {
            copy(self.offset + whole_rows * row_bytes, whole_rows, rest, 1);
        }
    }
}

impl Gpu {
    /// Whether a copy of `bytes` bytes fits a slot's texture: something to copy, in no more rows
    /// than the adapter's textures have.
    pub(crate) fn texture_copy_fits(&self, bytes: u64) -> bool {
        let rows = (bytes / 16).div_ceil(TEXELS_PER_ROW);
        rows > 0 && rows <= u64::from(self.limits().max_texture_dimension_2d)
    }

    /// Records a copy of `bytes` bytes of `buffer` from `offset` (both multiples of 16) into
    /// texture slot `slot`, texel `i` holding bytes `16 i .. 16 i + 16`, and returns its view; `None`
    /// when there is nothing to copy or the copy needs more rows than the adapter's textures have.
    /// The next copy into the slot overwrites it: the launches recorded in between read this one.
    fn texture_copy(
        &self,
        slot: usize,
        buffer: &wgpu::Buffer,
        offset: u64,
        bytes: u64,
    ) -> Option<wgpu::TextureView> {
        assert!(
            offset.is_multiple_of(16) && bytes.is_multiple_of(16),
            "texture_copy: whole texels only"
        );
        if !self.texture_copy_fits(bytes) {
            return None;
        }
        let texels = bytes / 16;
        let rows = texels.div_ceil(TEXELS_PER_ROW);
        let (texture, view) = self.slot_texture(slot, rows as u32);
        self.0.textures.borrow_mut()[slot]
            .as_mut()
            .expect("the slot's texture was just made")
            .holds = Some(CopiedRange {
            buffer: buffer.clone(),
            offset,
            bytes,
        });
        self.mark_read(slot);
        let ends_pass = self.0.recorder.borrow().has_open_pass();
        self.count(|s| {
            s.texture_copies += 1;
            s.bytes_copied += bytes;
            s.passes_ended_by_copies += u64::from(ends_pass);
        });
        self.record_copy(TexelCopy {
            buffer: buffer.clone(),
            offset,
            texels,
            texture,
        });
        Some(view)
    }

    /// Records texture copies of `operands` for a kernel that reads them so, rounded up to whole
    /// texels, except those a slot still holds; a copy goes into a slot the launch does not read
    /// ([`Gpu::slot_to_fill`]). Returns the views of the operands' slots (a placeholder where an
    /// operand is `None`) when every operand given is copied, and `None`, with nothing recorded,
    /// when the device does not use copies, or a range does not start on a texel or its last
    /// texel would pass its buffer's end, or a copy does not fit: the kernel then reads the
    /// buffers.
    fn operand_copies<const N: usize>(
        &self,
        operands: [Option<&BufferArg>; N],
    ) -> Option<[wgpu::TextureView; N]> {
        const { assert!(N <= TEXTURE_SLOTS, "more operands than texture slots") };
        let texels = |x: &BufferArg| x.size.div_ceil(16) * 16;
        // checked for every operand before any copy is recorded, so that none is made in vain
        let copyable = |x: &BufferArg| {
            x.offset.is_multiple_of(16)
                && x.offset + texels(x) <= x.buffer.size()
                && self.texture_copy_fits(texels(x))
        };
        if !self.texture_copies() || !operands.iter().flatten().all(|x| copyable(x)) {
            return None;
        }
        let mut views = self.texture_placeholders();
        // operands a slot still holds are read from it; the others are copied into the slots
        // this launch does not read
        let mut read = [false; TEXTURE_SLOTS];
        let mut to_copy = [false; N];
        for (i, operand) in operands.iter().enumerate() {
            if let Some(x) = operand {
                match self.slot_holding(x.buffer, x.offset, texels(x)) {
                    Some((slot, view)) => {
                        read[slot] = true;
                        self.mark_read(slot);
                        views[i] = view;
                        self.count(|s| s.copies_reused += 1);
                    }
                    None => to_copy[i] = true,
                }
            }
        }
        for (i, operand) in operands.iter().enumerate() {
            if let (Some(x), true) = (operand, to_copy[i]) {
                let slot = self.slot_to_fill(&read, texels(x));
                read[slot] = true;
                views[i] = self
                    .texture_copy(slot, x.buffer, x.offset, texels(x))
                    .expect("the copy was checked to fit");
            }
        }
        Some(views)
    }

    /// Records `kernel` reading the ranges of `args` bound at `reads[i].0` from texture copies
    /// (slot i, bound at `reads[i].1`), with its override `TEX` set, where `copies` holds and the
    /// device makes them (see `operand_copies`); else reading the buffers, with the textures
    /// bound unread. `grids` are its workgroups without copies and with them.
    pub(crate) fn dispatch_reading_copies<P: UniformParams, const N: usize>(
        &self,
        (kernel, params): (Kernel, &P),
        args: &[BufferArg],
        (reads, copies): ([(Binding, Binding); N], bool),
        grids: [[u32; 3]; 2],
        flops: f64,
    ) {
        let operands = reads.map(|(from, _)| args.iter().find(|a| a.binding == from));
        // nothing is copied for a launch with no work
        let copies = if copies && !grids[1].contains(&0) {
            self.operand_copies(operands)
        } else {
            None
        };
        let copied = copies.is_some();
        let views = copies.unwrap_or_else(|| self.texture_placeholders());
        let textures: [TextureArg; N] = std::array::from_fn(|i| TextureArg {
            binding: reads[i].1,
            view: &views[i],
        });
        self.dispatch_with_textures(
            &kernel.flag("TEX", copied),
            params,
            (args, &textures),
            grids[usize::from(copied)],
            flops,
        );
    }

    /// The slot that holds a copy of `bytes` bytes of `buffer` from `offset`, and its view.
    fn slot_holding(
        &self,
        buffer: &wgpu::Buffer,
        offset: u64,
        bytes: u64,
    ) -> Option<(usize, wgpu::TextureView)> {
        let slots = self.0.textures.borrow();
        slots.iter().enumerate().find_map(|(i, slot)| {
            let t = slot.as_ref()?;
            let held = t.holds.as_ref()?;
            (held.buffer == *buffer && held.offset == offset && held.bytes == bytes)
                .then(|| (i, t.view.clone()))
        })
    }

    /// Operands read from slots so far (copied or not): the clock of [`SlotTexture::last_read`].
    fn operand_uses(&self) -> u64 {
        let s = self.host_stats();
        s.texture_copies + s.copies_reused
    }

    /// Records that a launch reads slot `slot` now.
    fn mark_read(&self, slot: usize) {
        let now = self.operand_uses();
        if let Some(t) = &mut self.0.textures.borrow_mut()[slot] {
            t.last_read = now;
        }
    }

    /// The slot to copy `bytes` bytes into, among those the launch does not `read`: preferably
    /// one whose texture is large enough (textures grow only when none is), then one that holds
    /// no copy, then the one read least recently (so that the copies read again soonest tend to
    /// stay).
    fn slot_to_fill(&self, read: &[bool; TEXTURE_SLOTS], bytes: u64) -> usize {
        let rows = (bytes / 16).div_ceil(TEXELS_PER_ROW);
        let slots = self.0.textures.borrow();
        (0..TEXTURE_SLOTS)
            .filter(|&s| !read[s])
            .min_by_key(|&s| match &slots[s] {
                Some(t) => (
                    u64::from(t.texture.height()) < rows,
                    t.holds.is_some(),
                    t.last_read,
                ),
                None => (true, false, 0),
            })
            .expect("no more operands than slots")
    }

    /// Forgets every copy the slots hold, and when they were read: each submission starts with
    /// empty slots, so that a repeated step picks the same slots and binds the same textures
    /// (and its bind groups stay cached).
    pub(super) fn forget_all_copies(&self) {
        for t in self.0.textures.borrow_mut().iter_mut().flatten() {
            t.holds = None;
            t.last_read = 0;
        }
    }

    /// Forgets the copies of `buffer` that slots hold: it is about to change.
    pub(super) fn forget_copies_of(&self, buffer: &wgpu::Buffer) {
        for t in self.0.textures.borrow_mut().iter_mut().flatten() {
            if t.holds.as_ref().is_some_and(|held| held.buffer == *buffer) {
                t.holds = None;
            }
        }
    }

    /// Views of one texel's texture, never written, for a kernel that binds textures but does not
    /// read them: no slot's texture is made or bound for it.
    fn texture_placeholders<const N: usize>(&self) -> [wgpu::TextureView; N] {
        let view = self
            .0
            .placeholder_texture
            .get_or_init(|| self.new_texture("unread texture", 1, 1).1);
        std::array::from_fn(|_| view.clone())
    }

    /// A new rgba32float texture of `width` x `height` texels that copies can be made into.
    fn new_texture(
        &self,
        label: &str,
        width: u32,
        height: u32,
    ) -> (wgpu::Texture, wgpu::TextureView) {
        let texture = self.device().create_texture(&wgpu::TextureDescriptor {
            label: Some(label),
            size: wgpu::Extent3d {
                width,
                height,
                depth_or_array_layers: 1,
            },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format: wgpu::TextureFormat::Rgba32Float,
            usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
            view_formats: &[],
        });
        let view = texture.create_view(&wgpu::TextureViewDescriptor::default());
        (texture, view)
    }

    /// Bytes of the textures that hold copies now (kept until the device closes, grown as needed:
    /// also their peak).
    pub fn texture_bytes(&self) -> u64 {
        let slots = self.0.textures.borrow();
        slots
            .iter()
            .flatten()
            .map(|t| u64::from(t.texture.width()) * u64::from(t.texture.height()) * 16)
            .sum()
    }

    /// Slot `slot`'s texture with at least `rows` rows: the slot's own, or a new one of
    /// [`slot_height`] rows that replaces it.
    fn slot_texture(&self, slot: usize, rows: u32) -> (wgpu::Texture, wgpu::TextureView) {
        let mut slots = self.0.textures.borrow_mut();
        if let Some(t) = &slots[slot] {
            if t.texture.height() >= rows {
                return (t.texture.clone(), t.view.clone());
            }
        }
        let height = slot_height(rows, self.limits().max_texture_dimension_2d);
        let (texture, view) = self.new_texture("operand copy", TEXELS_PER_ROW as u32, height);
        slots[slot] = Some(SlotTexture {
            texture: texture.clone(),
            view: view.clone(),
            holds: None,
            last_read: 0,
        });
        (texture, view)
    }
}

/// The height of a slot texture for `rows` rows: rounded up to a multiple of [`ROW_GRANULE`] that
/// is not a power of two, at most `limit` (the adapter's). The software driver compiles a kernel
/// again for each combination of its textures' sides being powers of two or not. So every
/// texture's height is kept off the powers of two, as its width is always one: a slot that grows
/// between two launches of a kernel does not make it compile again.
fn slot_height(rows: u32, limit: u32) -> u32 {
    let mut height = rows.next_multiple_of(ROW_GRANULE);
    while height.is_power_of_two() {
        height += ROW_GRANULE;
    }
    height.min(limit).max(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_heights_hold_their_rows_in_granules_and_are_no_power_of_two() {
        let limit = 16384;
        for rows in 1..=limit - 2 * ROW_GRANULE {
            let height = slot_height(rows, limit);
            assert!(height >= rows, "{rows} rows in {height}");
            assert!(height < rows + 3 * ROW_GRANULE, "{rows} rows in {height}");
            assert_eq!(height % ROW_GRANULE, 0, "{rows} rows in {height}");
            assert!(!height.is_power_of_two(), "{rows} rows in {height}");
        }
        // near the limit the limit wins, and past it the rows (the copy then does not fit)
        assert_eq!(slot_height(limit, limit), limit);
        assert_eq!(slot_height(limit + 1, limit), limit + 1);
    }
}
