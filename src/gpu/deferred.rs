//! Launches held back until their pipelines are made. A launch whose pipeline is new only plans
//! it ([`KernelCache::plan`](super::kernels::KernelCache::plan)); from then on, launches and
//! texture copies are kept in order on the host. At the next point that needs the commands in the
//! encoder (a submit, a readback, a timestamp), every planned pipeline is made at once, from
//! several threads, and the commands kept are recorded as they came. Drivers compile as they make
//! a pipeline, so a command's first step makes its pipelines side by side instead of one by one.
//! Once every pipeline is made, launches are recorded directly and nothing is kept.

use std::rc::Rc;

use super::kernels::PipelineSlot;
use super::textures::TexelCopy;
use super::Gpu;

/// A command kept back while pipelines are planned.
pub(super) enum Deferred {
    /// A kernel launch.
    Launch {
        pipeline: PipelineSlot,
        bind_group: wgpu::BindGroup,
        workgroups: [u32; 3],
    },
    /// A copy of a buffer into a texture slot (recorded outside any compute pass).
    Copy(TexelCopy),
}

impl Gpu {
    /// Records a launch into the open compute pass (beginning one if none is open), or keeps it
    /// in order behind the commands already kept, where its pipeline is only planned or earlier
    /// commands are kept.
    pub(super) fn record_launch(
        &self,
        pipeline: PipelineSlot,
        bind_group: wgpu::BindGroup,
        workgroups: [u32; 3],
    ) {
        let mut rec = self.0.recorder.borrow_mut();
        match pipeline {
            PipelineSlot::Ready(pipeline) if rec.deferred.is_empty() => {
                drop(rec);
                self.launch_in_pass(&pipeline, &bind_group, workgroups);
            }
            pipeline => rec.deferred.push(Deferred::Launch {
                pipeline,
                bind_group,
                workgroups,
            }),
        }
    }

    /// Records a texture copy into the encoder (ending the open compute pass), or keeps it in
    /// order where commands are kept.
    pub(super) fn record_copy(&self, copy: TexelCopy) {
        let mut rec = self.0.recorder.borrow_mut();
        if rec.deferred.is_empty() {
            drop(rec);
            self.encoder_now(|encoder| copy.record(encoder));
        } else {
            rec.deferred.push(Deferred::Copy(copy));
        }
    }

    /// Makes every planned pipeline and records the commands kept, in order.
    pub(super) fn settle(&self) {
        let deferred = std::mem::take(&mut self.0.recorder.borrow_mut().deferred);
        if deferred.is_empty() {
            return;
        }
        let made = self.0.kernels.borrow_mut().build_planned(self.device());
        for command in deferred {
            match command {
                Deferred::Launch {
                    pipeline,
                    bind_group,
                    workgroups,
                } => {
                    let pipeline = match pipeline {
                        PipelineSlot::Ready(pipeline) => pipeline,
                        PipelineSlot::Planned(i) => Rc::clone(&made[i]),
                    };
                    self.launch_in_pass(&pipeline, &bind_group, workgroups);
                }
                Deferred::Copy(copy) => self.encoder_now(|encoder| copy.record(encoder)),
            }
        }
    }

    /// The pipeline of `slot`, made now if it is only planned. Only where no command is kept
    /// back (after [`Gpu::settle`]): the planned pipelines are then this launch's alone.
    pub(super) fn made(&self, slot: PipelineSlot) -> Rc<wgpu::ComputePipeline> {
        match slot {
            PipelineSlot::Ready(pipeline) => pipeline,
            PipelineSlot::Planned(i) => {
                Rc::clone(&self.0.kernels.borrow_mut().build_planned(self.device())[i])
            }
        }
    }

    /// Records a launch into the open compute pass, beginning one if none is open.
    fn launch_in_pass(
        &self,
        pipeline: &wgpu::ComputePipeline,
        bind_group: &wgpu::BindGroup,
        workgroups: [u32; 3],
    ) {
        let open = self.0.recorder.borrow_mut().pass.take();
        let mut pass = open.unwrap_or_else(|| self.begin_pass(None));
        pass.set_pipeline(pipeline);
        pass.set_bind_group(0, bind_group, &[]);
        pass.dispatch_workgroups(workgroups[0], workgroups[1], workgroups[2]);
        self.0.recorder.borrow_mut().pass = Some(pass);
    }
}
