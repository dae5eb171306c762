//! The conv family (to be filled in).

use crate::backward::Ctx;
use crate::ops::Family;
use crate::tape::NodeId;
use crate::tensor::Tensor;

/// Ops of the conv family.
pub(crate) enum ConvOp {}

impl Family for ConvOp {
    fn name(&self) -> &'static str {
        match *self {}
    }
    fn for_each_input(&self, _f: &mut dyn FnMut(NodeId)) {
        match *self {}
    }
    fn backward(&self, _out: &Tensor, _g: &Tensor, _ctx: &mut Ctx<'_>) {
        match *self {}
    }
}
