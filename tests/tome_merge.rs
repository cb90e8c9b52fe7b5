//! ToMe's merge kernels: the CPU pass against the generic tensor path (values), and the generic
//! path's gradients against ToMe eq. 1 differentiated by hand, on odd shapes.
use burn::prelude::*;
use burn::tensor::Distribution;
use mergevq::tokenizer::tome::bipartite_soft_matching;

fn host<const D: usize>(x: Tensor<D>) -> Vec<f32> {
    x.into_data().convert::<f32>().try_into_vec::<f32>().unwrap()
}

/// (batch, tokens, channels, r, class token): odd token counts, r at and past its clamp.
const SHAPES: [(usize, usize, usize, i64, bool); 4] =
    [(3, 33, 7, 5, true), (2, 257, 13, 64, true), (1, 32, 5, 40, false), (4, 9, 1, 2, true)];

#[test]
fn cpu_merge_matches_generic_path() {
    let device = mergevq::device().autodiff();
    for (b, t, c, r, cls) in SHAPES {
        let metric = Tensor::<3>::random([b, t, 8], Distribution::Normal(0.0, 1.0), &device);
        let x = Tensor::<3>::random([b, t, c], Distribution::Normal(0.0, 1.0), &device);
        let size = Tensor::<3>::random([b, t, 1], Distribution::Uniform(1.0, 4.0), &device);
        let m = bipartite_soft_matching(metric, r, cls).unwrap();
        let fast = host(m.merge_wavg(x.clone(), size.clone()));
        // A tracked input takes the generic path (select_assign), as in training.
        let generic = host(m.merge_wavg(x.require_grad(), size));
        assert_eq!(fast.len(), b * m.rows_out * c);
        for (i, (a, g)) in fast.iter().zip(&generic).enumerate() {
            assert!((a - g).abs() <= 1e-5 * (1.0 + g.abs()), "{b}x{t}x{c} r={r}: row value {i}: {a} vs {g}");
        }
    }
}

#[test]
fn generic_merge_gradients_follow_eq1() {
    let device = mergevq::device().autodiff();
    for (b, t, c, r, cls) in SHAPES {
        let metric = Tensor::<3>::random([b, t, 8], Distribution::Normal(0.0, 1.0), &device);
        let x = Tensor::<3>::random([b, t, c], Distribution::Normal(0.0, 1.0), &device).require_grad();
        let size = Tensor::<3>::random([b, t, 1], Distribution::Uniform(1.0, 4.0), &device);
        let m = bipartite_soft_matching(metric, r, cls).unwrap();
        let w = Tensor::<3>::random([b, m.rows_out, c], Distribution::Normal(0.0, 1.0), &device);
        let loss = (m.merge_wavg(x.clone(), size.clone()) * w.clone()).sum();
        let grads = loss.backward();
        let gx = host(x.grad(&grads).unwrap());
        // ∂/∂xᵢ Σ_o w_o·(Σ_{i→o} sᵢxᵢ / Σ_{i→o} sᵢ) = w_{o(i)}·sᵢ / S_{o(i)}.
        let (s, w) = (host(size), host(w));
        for (bi, map) in m.host_map().iter().enumerate() {
            let mut total = vec![0f32; m.rows_out];
            map.iter().enumerate().for_each(|(i, &o)| total[o] += s[bi * t + i]);
            for (i, &o) in map.iter().enumerate() {
                for ch in 0..c {
                    let want = w[(bi * m.rows_out + o) * c + ch] * s[bi * t + i] / total[o];
                    let got = gx[(bi * t + i) * c + ch];
                    assert!((got - want).abs() <= 1e-5 * (1.0 + want.abs()), "∂x[{bi},{i},{ch}]: {got} vs {want}");
                }
            }
        }
        // And unmerge copies each output row back to every row merged into it.
        let y = Tensor::<3>::random([b, m.rows_out, c], Distribution::Normal(0.0, 1.0), &device);
        let (un, yv) = (host(m.unmerge(y.clone())), host(y));
        for (bi, map) in m.host_map().iter().enumerate() {
            for (i, &o) in map.iter().enumerate() {
                assert_eq!(un[(bi * t + i) * c..][..c], yv[(bi * m.rows_out + o) * c..][..c]);
            }
        }
    }
}
