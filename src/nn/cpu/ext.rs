//! The CPU convolution behind Burn's backend-extension point: one extension op, implemented for
//! the Flex backend (the kernels of [`super::conv`]) and for `Autodiff<Flex>` with a handwritten
//! backward (input, weight and bias gradients from the same kernels). Tensors that are not plain
//! f32 fall back to Burn's own conv.
use super::conv;
use super::im2col::Geom;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::NodeId;
use burn::backend::flex::FlexTensor;
use burn::backend::ops::ModuleOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Autodiff, Backend, Flex, TensorMetadata};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{DType, TensorData};

#[backend_extension(Flex, Autodiff)]
pub trait CpuConv: Backend {
    /// conv2d(x, weight) + bias: any kernel size, the same stride along both axes, padding
    /// [rows, columns] on both sides, one group.
    fn mvq_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stride: usize,
        padding: [usize; 2],
    ) -> FloatTensor<Self>;
}

fn dims4(t: &FlexTensor) -> Option<[usize; 4]> {
    let s = t.shape();
    (s.num_dims() == 4).then(|| [s[0], s[1], s[2], s[3]])
}

/// A contiguous f32 copy-free view, or None for other dtypes / layouts.
fn f32s(t: &FlexTensor) -> Option<&[f32]> {
    if t.dtype() != DType::F32 {
        return None;
    }
    let (a, b) = t.layout().contiguous_offsets()?;
    t.storage::<f32>().get(a..b)
}

fn tensor(v: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(v, shape))
}

/// The kernel geometry and contiguous operands, or None when the generic path must run.
fn prepare(
    x: &FlexTensor,
    w: &FlexTensor,
    stride: usize,
    padding: [usize; 2],
) -> Option<(Geom, FlexTensor, FlexTensor)> {
    let g = Geom::new(dims4(x)?, dims4(w)?, stride, padding)?;
    let (x, w) = (x.to_contiguous(), w.to_contiguous());
    (f32s(&x).is_some() && f32s(&w).is_some()).then_some((g, x, w))
}

fn options(stride: usize, padding: [usize; 2]) -> ConvOptions<2> {
    ConvOptions::new([stride; 2], padding, [1, 1], 1)
}

fn flex_forward(x: FlexTensor, w: FlexTensor, bias: FlexTensor, stride: usize, padding: [usize; 2]) -> FlexTensor {
    let bias = bias.to_contiguous();
    if let Some((g, xc, wc)) = prepare(&x, &w, stride, padding) {
        if let (Some(xs), Some(ws), Some(bs)) = (f32s(&xc), f32s(&wc), f32s(&bias)) {
            if bs.len() == g.c_out {
                return tensor(conv::forward(&g, xs, ws, Some(bs)), vec![g.batch, g.c_out, g.oh, g.ow]);
            }
        }
    }
    <Flex as ModuleOps<Flex>>::conv2d(x, w, Some(bias), options(stride, padding))
}

impl CpuConv for Flex {
    fn mvq_conv2d(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        stride: usize,
        padding: [usize; 2],
    ) -> FlexTensor {
        flex_forward(x, weight, bias, stride, padding)
    }
}

#[derive(Debug)]
struct ConvBackward;

impl Backward<Flex, 3> for ConvBackward {
    type State = (NodeId, NodeId, usize, [usize; 2]);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [node_x, node_w, node_b] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node).to_contiguous();
        let (xs, ws, stride, padding) = ops.state;
        let x = checkpointer.retrieve_node_output::<FlexTensor>(xs);
        let w = checkpointer.retrieve_node_output::<FlexTensor>(ws);
        let opts = options(stride, padding);
        // The CPU kernels' inputs: geometry, contiguous x and w, and f32 data of ∂L/∂y.
        let fast = prepare(&x, &w, stride, padding).zip(f32s(&dy));
        if let Some(node) = node_x {
            let dx = fast.as_ref().and_then(|((g, _, wc), d)| {
                f32s(wc).map(|ws| tensor(conv::input_grad(g, ws, d), vec![g.batch, g.c_in, g.h, g.w]))
            });
            let dx = dx.unwrap_or_else(|| Flex::conv2d_x_backward(x.clone(), w.clone(), dy.clone(), opts.clone()));
            grads.register::<Flex>(node.id, dx);
        }
        if let Some(node) = node_w {
            let dw = fast.as_ref().and_then(|((g, xc, _), d)| {
                f32s(xc).map(|xs| tensor(conv::weight_grad(g, xs, d), vec![g.c_out, g.c_in, g.kh, g.kw]))
            });
            let dw = dw.unwrap_or_else(|| Flex::conv2d_weight_backward(x.clone(), w.clone(), dy.clone(), opts.clone()));
            grads.register::<Flex>(node.id, dw);
        }
        if let Some(node) = node_b {
            let db = match fast {
                Some(((g, _, _), d)) => tensor(conv::bias_grad(&g, d), vec![g.c_out]),
                None => {
                    let b = FlexTensor::zeros(vec![dims4(&w).map_or(0, |d| d[0])].into(), DType::F32);
                    Flex::conv2d_bias_backward(x, b, dy)
                }
            };
            grads.register::<Flex>(node.id, db);
        }
    }
}

impl<C: CheckpointStrategy> CpuConv for Autodiff<Flex, C> {
    fn mvq_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stride: usize,
        padding: [usize; 2],
    ) -> FloatTensor<Self> {
        let prep = ConvBackward.prepare::<C>([x.node(), weight.node(), bias.node()]).compute_bound().stateful();
        match prep {
            OpsKind::Tracked(mut prep) => {
                let xs = prep.checkpoint(&x);
                let ws = prep.checkpoint(&weight);
                let y =
                    flex_forward(x.into_primitive(), weight.into_primitive(), bias.into_primitive(), stride, padding);
                prep.finish((xs, ws, stride, padding), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(flex_forward(
                x.into_primitive(),
                weight.into_primitive(),
                bias.into_primitive(),
                stride,
                padding,
            )),
        }
    }
}
