//! The CPU convolution kernels against Burn's generic conv, values and gradients, on odd shapes:
//! stride 1 and 2, 1×1, patchify, several tiles, Winograd tiles cut by odd edges, and the portable
//! matrix product.
#![cfg(feature = "flex")]
use burn::prelude::*;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::Distribution;
use mergevq::nn::cpu;

/// (x dims, c_out, kernel [kh, kw], stride, padding [rows, columns])
type Case = ([usize; 4], usize, [usize; 2], usize, [usize; 2]);
const CASES: &[Case] = &[
    ([2, 5, 7, 9], 6, [3, 3], 1, [1, 1]),
    ([1, 3, 8, 11], 4, [3, 3], 2, [1, 1]),
    ([2, 3, 9, 7], 5, [3, 3], 2, [0, 0]),
    ([3, 4, 5, 5], 7, [1, 1], 1, [0, 0]),
    ([1, 6, 8, 8], 5, [4, 4], 4, [0, 0]),
    ([1, 33, 40, 37], 17, [3, 3], 1, [1, 1]),
    ([2, 9, 5, 7], 8, [3, 3], 1, [1, 1]),
    ([1, 16, 4, 4], 12, [3, 3], 1, [1, 1]),
    ([2, 40, 13, 21], 9, [1, 1], 1, [0, 0]),
    ([1, 3, 9, 10], 4, [3, 3], 1, [0, 0]),
    ([1, 2, 7, 6], 3, [5, 5], 1, [2, 2]),
    ([5, 40, 2, 2], 24, [3, 3], 1, [1, 1]),
    ([4, 24, 4, 4], 10, [3, 3], 2, [1, 1]),
    ([1, 8, 130, 131], 9, [3, 3], 1, [1, 1]),
    // InceptionV3's factorised kernels: rectangular, padded along one axis only.
    ([2, 6, 9, 11], 5, [1, 7], 1, [0, 3]),
    ([1, 7, 10, 6], 4, [7, 1], 1, [3, 0]),
    ([2, 5, 8, 8], 6, [1, 3], 1, [0, 1]),
    ([1, 4, 9, 7], 3, [3, 1], 2, [1, 0]),
    ([1, 3, 7, 9], 5, [2, 3], 1, [1, 0]),
];

fn max_diff(a: Tensor<4>, b: Tensor<4>) -> f32 {
    let scale = b.clone().abs().max().into_scalar::<f32>().max(1.0);
    (a - b).abs().max().into_scalar::<f32>() / scale
}

fn max_diff1(a: Tensor<1>, b: Tensor<1>) -> f32 {
    let scale = b.clone().abs().max().into_scalar::<f32>().max(1.0);
    (a - b).abs().max().into_scalar::<f32>() / scale
}

struct Grads {
    y: Tensor<4>,
    dx: Tensor<4>,
    dw: Tensor<4>,
    db: Tensor<1>,
}

/// Output and gradients of Σ(y·r) through the kernel (`fast`) or Burn's conv.
fn run(fast: bool, x: &Tensor<4>, w: &Tensor<4>, b: &Tensor<1>, r: &Tensor<4>, s: usize, p: [usize; 2]) -> Grads {
    let (x, w, b) = (x.clone().require_grad(), w.clone().require_grad(), b.clone().require_grad());
    let y = if fast {
        cpu::conv2d(x.clone(), w.clone(), Some(b.clone()), s, p)
    } else {
        conv2d(x.clone(), w.clone(), Some(b.clone()), ConvOptions::new([s; 2], p, [1, 1], 1))
    };
    let grads = (y.clone() * r.clone()).sum().backward();
    let (dx, dw, db) = (x.grad(&grads).unwrap(), w.grad(&grads).unwrap(), b.grad(&grads).unwrap());
    Grads { y: y.inner(), dx, dw, db }
}

fn compare_all() {
    let device = mergevq::device().autodiff();
    for &(xd, co, k, s, p) in CASES {
        let x = Tensor::<4>::random(xd, Distribution::Normal(0.0, 1.0), &device);
        let w = Tensor::<4>::random([co, xd[1], k[0], k[1]], Distribution::Normal(0.0, 0.3), &device);
        let b = Tensor::<1>::random([co], Distribution::Normal(0.0, 1.0), &device);
        let probe = conv2d(x.clone(), w.clone(), None, ConvOptions::new([s; 2], p, [1, 1], 1));
        let r = Tensor::<4>::random(probe.dims(), Distribution::Normal(0.0, 1.0), &device);
        let (f, g) = (run(true, &x, &w, &b, &r, s, p), run(false, &x, &w, &b, &r, s, p));
        let case = format!("x {xd:?} c_out {co} k {k:?} s {s} p {p:?}");
        assert_eq!(f.y.dims(), g.y.dims(), "{case}");
        let errs = [
            ("y", max_diff(f.y, g.y)),
            ("dx", max_diff(f.dx, g.dx)),
            ("dw", max_diff(f.dw, g.dw)),
            ("db", max_diff1(f.db, g.db)),
        ];
        for (what, e) in errs {
            assert!(e < 1e-4, "{case}: {what} differs by {e:e} (relative to its largest value)");
        }
    }
}

#[test]
fn kernels_match_generic_values_and_gradients() {
    compare_all();
}

#[test]
fn inference_tensors_take_the_kernel_and_match() {
    let device = mergevq::device();
    let x = Tensor::<4>::random([2, 7, 10, 9], Distribution::Normal(0.0, 1.0), &device);
    let w = Tensor::<4>::random([5, 7, 3, 3], Distribution::Normal(0.0, 0.3), &device);
    let fast = cpu::conv2d(x.clone(), w.clone(), None, 1, [1, 1]);
    let slow = conv2d(x, w, None, ConvOptions::new([1; 2], [1; 2], [1, 1], 1));
    assert!(max_diff(fast, slow) < 1e-5);
}

#[test]
fn portable_path_matches_generic() {
    // SAFETY of the env switch: the other tests compare two correct paths, whichever the matrix
    // product runs on meanwhile.
    std::env::set_var("MERGEVQ_CPU", "portable");
    assert_eq!(cpu::gemm::level(), cpu::gemm::CpuLevel::Portable);
    compare_all();
    std::env::remove_var("MERGEVQ_CPU");
}

#[test]
fn unusual_geometry_is_refused_not_panicking() {
    use cpu::im2col::Geom;
    assert!(Geom::new([1, 3, 2, 2], [4, 3, 5, 5], 1, [0, 0]).is_none());
    assert!(Geom::new([1, 3, 2, 8], [4, 3, 5, 1], 1, [1, 0]).is_none());
    assert!(Geom::new([1, 3, 8, 8], [4, 2, 3, 3], 1, [1, 1]).is_none());
    assert!(Geom::new([1, 3, 8, 8], [4, 3, 0, 3], 1, [1, 1]).is_none());
    assert!(Geom::new([1, 3, 8, 8], [4, 3, 3, 3], 0, [1, 1]).is_none());
}

#[test]
fn winograd_matches_the_direct_kernel() {
    use cpu::im2col::Geom;
    // Odd sizes (a half tile at the right and bottom), one tile row, several blocks and images.
    for (xd, co) in [
        ([1, 33, 40, 37], 17),
        ([2, 9, 5, 7], 8),
        ([1, 16, 4, 4], 12),
        ([3, 8, 6, 9], 9),
        ([2, 8, 130, 9], 8),
        ([1, 3, 1, 2], 2),
        ([1, 2, 3, 1], 5),
    ] {
        let g = Geom::new(xd, [co, xd[1], 3, 3], 1, [1, 1]).unwrap();
        assert!(cpu::winograd::computes(&g));
        let fill = |n: usize, seed: u32| {
            (0..n)
                .map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 500.0 - 1.0)
                .collect::<Vec<_>>()
        };
        let (x, w, b) = (fill(xd.iter().product(), 1), fill(co * xd[1] * 9, 7), fill(co, 3));
        let direct = cpu::conv::im2col_forward(&g, &x, &w, Some(&b));
        let scale = direct.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        for (name, fast, tol) in [
            ("F(2×2)", cpu::winograd::forward_tile::<cpu::winograd::F2>(&g, &x, &w, Some(&b)), 1e-5),
            ("F(4×4)", cpu::winograd::forward_tile::<cpu::winograd::F4>(&g, &x, &w, Some(&b)), 1e-4),
        ] {
            let err = fast.iter().zip(&direct).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max) / scale;
            assert!(err < tol, "x {xd:?}: Winograd {name} differs by {err:e} (relative to the largest output)");
        }
    }
}

/// Deterministic values in [-1, 1).
fn fill(n: usize, seed: u32) -> Vec<f32> {
    (0..n).map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 500.0 - 1.0).collect()
}

/// y = x·Wᵀ in f64.
fn linear_f64(x: &[f32], w: &[f32], m: usize, n: usize, k: usize) -> Vec<f64> {
    (0..m * n).map(|i| (0..k).map(|j| x[i / n * k + j] as f64 * w[i % n * k + j] as f64).sum()).collect()
}

#[test]
fn packed_linear_matches_f64_and_rows_do_not_depend_on_the_batch() {
    use cpu::packed::PackedLinear;
    // Widths around the 16-column panel and depths of odd lengths; row counts around the 6-row tile.
    for (n, k) in [(1, 1), (15, 7), (16, 33), (37, 19), (70, 64)] {
        let w = fill(n * k, 11);
        let p = PackedLinear::new(&w, n, k);
        assert_eq!(p.out_dim(), n);
        let x = fill(13 * k, 5);
        let all = p.forward(&x, 13);
        let want = linear_f64(&x, &w, 13, n, k);
        let err = all.iter().zip(&want).map(|(a, b)| (*a as f64 - b).abs()).fold(0.0, f64::max);
        assert!(err < 1e-5 * k as f64, "n {n} k {k}: off by {err:e}");
        // Every row alone, and in a run of 1..=7 rows starting anywhere, gives the same bits.
        for m in 1..=7 {
            for r0 in [0, 13 - m, 13 / 2 - m / 2] {
                let part = p.forward(&x[r0 * k..(r0 + m) * k], m);
                assert_eq!(part, all[r0 * n..(r0 + m) * n], "n {n} k {k}: rows {r0}..{} alone differ", r0 + m);
            }
        }
    }
}

#[test]
fn gated_product_is_swiglu_of_the_two_products() {
    use cpu::packed::PackedLinear;
    use mergevq::nn::fused::exp;
    // Hidden widths around the 8-column half panel.
    for (n, k) in [(1, 3), (8, 16), (13, 29), (40, 24)] {
        let (w1, w3, x) = (fill(n * k, 21), fill(n * k, 23), fill(7 * k, 25));
        let (a, b) = (PackedLinear::new(&w1, n, k).forward(&x, 7), PackedLinear::new(&w3, n, k).forward(&x, 7));
        let want: Vec<f32> = a.iter().zip(&b).map(|(&a, &b)| a / (1.0 + exp(-a)) * b).collect();
        let g = PackedLinear::gated(&w1, &w3, n, k);
        assert_eq!(g.out_dim(), n);
        assert_eq!(g.forward(&x, 7), want, "n {n} k {k}");
    }
}

#[test]
fn packed_linear_portable_path_gives_the_same_bits() {
    use cpu::packed::PackedLinear;
    let (m, n, k) = (9, 37, 29);
    let (x, w) = (fill(m * k, 3), fill(n * k, 9));
    let p = PackedLinear::new(&w, n, k);
    let native = p.forward(&x, m);
    // One fused multiply-add chain per element on both paths (see the `portable_path_…` test for the switch).
    std::env::set_var("MERGEVQ_CPU", "portable");
    let portable = p.forward(&x, m);
    std::env::remove_var("MERGEVQ_CPU");
    assert_eq!(native, portable);
}

#[test]
fn team_shares_cover_the_work_and_a_panic_reaches_the_caller() {
    use cpu::team::{Shared, Team};
    let team = Team::new(3);
    // Every index of a 3-phase computation written once by its owner, read by all after a sync.
    let mut a = vec![0f32; 10];
    let mut b = vec![0f32; 10];
    let (sa, sb) = (Shared::new(&mut a), Shared::new(&mut b));
    team.run(|m| {
        // SAFETY: shares are disjoint; reads follow the sync.
        unsafe {
            let r = m.share(10);
            sa.part(r.clone()).iter_mut().zip(r.clone()).for_each(|(x, i)| *x = i as f32);
            m.sync();
            let all: f32 = sa.read().iter().sum();
            sb.part(r).iter_mut().for_each(|x| *x = all);
        }
    });
    assert_eq!(a, (0..10).map(|i| i as f32).collect::<Vec<_>>());
    assert_eq!(b, vec![45.0; 10]);
    // A member that panics before a sync: the run panics instead of leaving the others waiting.
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        team.run(|m| {
            if m.share(3).start == 1 {
                panic!("member 1 fails");
            }
            m.sync();
        })
    }));
    // The caller gets member 1's own panic, not the others' "another member panicked".
    let payload = r.expect_err("the run panics");
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"member 1 fails"));
    // The team still works afterwards.
    let mut c = vec![0f32; 4];
    let sc = Shared::new(&mut c);
    // SAFETY: disjoint shares.
    team.run(|m| unsafe { sc.part(m.share(4)).fill(1.0) });
    assert_eq!(c, vec![1.0; 4]);
}

#[test]
fn patch_matrix_of_whole_rows_equals_the_general_gather() {
    use cpu::im2col::{im2col, Geom};
    // Stride 1 with and without padding, kernels 1, 3, 5, and a stride-2 case (general path only).
    for (xd, k, s, p) in
        [([3, 7, 9], 3, 1, 1), ([2, 6, 5], 3, 1, 0), ([2, 8, 7], 5, 1, 2), ([4, 5, 6], 1, 1, 0), ([2, 9, 8], 3, 2, 1)]
    {
        let g = Geom::new([1, xd[0], xd[1], xd[2]], [2, xd[0], k, k], s, [p, p]).unwrap();
        let x = fill(xd.iter().product(), 13);
        let (rows, n) = (g.rows(), g.n_out());
        let mut whole = vec![f32::NAN; rows * n];
        im2col(&g, &x, 0, n, &mut whole);
        // The same columns gathered in pieces that start and end inside output rows.
        let mut pieces = vec![f32::NAN; rows * n];
        let mut p0 = 0;
        for len in [1, 3, 2, 5].iter().cycle() {
            if p0 >= n {
                break;
            }
            let p1 = (p0 + len).min(n);
            let mut col = vec![f32::NAN; rows * (p1 - p0)];
            im2col(&g, &x, p0, p1, &mut col);
            for r in 0..rows {
                pieces[r * n + p0..r * n + p1].copy_from_slice(&col[r * (p1 - p0)..(r + 1) * (p1 - p0)]);
            }
            p0 = p1;
        }
        assert_eq!(whole, pieces, "x {xd:?} k {k} stride {s} pad {p}");
    }
}

/// The host 3×3 pooling against Burn's: max and mean (padding excluded from the count), stride 1
/// and 2, padded or not, odd sizes and maps of exactly 3 rows or columns.
#[test]
fn pooling_matches_generic() {
    use burn::tensor::module::{avg_pool2d, max_pool2d};
    use burn::tensor::ops::{AvgPoolOptions, MaxPoolOptions};
    use mergevq::nn::pool::{pool3, Pool};
    let device = mergevq::device();
    for (xd, s, p) in
        [([2, 3, 9, 8], 1, 1), ([1, 4, 11, 7], 2, 0), ([1, 2, 3, 5], 1, 0), ([2, 2, 8, 3], 2, 1), ([1, 1, 1, 4], 1, 1)]
    {
        let x = Tensor::<4>::random(xd, Distribution::Normal(0.0, 1.0), &device);
        let mut mo = MaxPoolOptions::new([3, 3]);
        mo.stride = [s, s];
        mo.padding = [(p, p), (p, p)];
        let ao = AvgPoolOptions {
            kernel_size: [3, 3],
            stride: [s, s],
            padding: [(p, p), (p, p)],
            count_include_pad: false,
            ceil_mode: false,
        };
        let (m, a) = (max_pool2d(x.clone(), mo), avg_pool2d(x.clone(), ao));
        let (pm, pa) = (pool3(x.clone(), Pool::Max, s, p), pool3(x, Pool::Avg, s, p));
        assert_eq!((pm.dims(), pa.dims()), (m.dims(), a.dims()), "x {xd:?} s {s} p {p}");
        assert!(max_diff(pm, m) == 0.0, "max pool, x {xd:?} s {s} p {p}");
        assert!(max_diff(pa, a) < 1e-6, "mean pool, x {xd:?} s {s} p {p}");
    }
}

/// The host attention against Burn's: self- and cross-attention, query counts that are not a
/// multiple of the block, and biases broadcast along each axis (ToMe's log-size bias, a causal
/// mask with −∞, a full bias).
#[test]
fn attention_matches_generic() {
    let device = mergevq::device();
    let rand = |d: [usize; 4]| Tensor::<4>::random(d, Distribution::Normal(0.0, 1.0), &device);
    for (b, h, nq, nk, hd) in [(2, 3, 70, 70, 16), (1, 2, 130, 45, 8), (2, 1, 64, 200, 32)] {
        let (q, k, v) = (rand([b, h, nq, hd]), rand([b, h, nk, hd]), rand([b, h, nk, hd]));
        let causal = Tensor::<4>::from_data(
            TensorData::new(
                (0..nq * nk).map(|i| if i % nk > i / nk { f32::NEG_INFINITY } else { 0.0 }).collect::<Vec<f32>>(),
                [1, 1, nq, nk],
            ),
            &device,
        );
        let biases = [None, Some(rand([b, 1, 1, nk]).abs().log()), Some(causal), Some(rand([b, h, nq, nk]))];
        for (i, bias) in biases.into_iter().enumerate() {
            assert!(cpu::attention::applies(&q, &k, &v, bias.as_ref()));
            let want = burn::tensor::module::attention(
                q.clone(),
                k.clone(),
                v.clone(),
                None,
                bias.clone(),
                Default::default(),
            );
            let got = cpu::attention::attention(q.clone(), k.clone(), v.clone(), bias);
            let e = max_diff(got, want);
            assert!(e < 1e-5, "b {b} h {h} nq {nq} nk {nk} hd {hd} bias {i}: differs by {e:e}");
        }
    }
}

/// The host element-wise kernels against Burn's ops: GELU (its erf approximation), SiLU, and
/// GroupNorm with and without affine and SiLU, on values spanning both tails.
#[test]
fn fused_elementwise_match_generic() {
    use burn::tensor::activation::{gelu, silu};
    use mergevq::nn::fused;
    let device = mergevq::device();
    let x = Tensor::<4>::random([2, 6, 5, 7], Distribution::Normal(0.0, 4.0), &device);
    assert!(max_diff(fused::gelu(x.clone()), gelu(x.clone())) < 1e-6, "GELU");
    assert!(max_diff(fused::silu(x.clone()), silu(x.clone())) < 1e-6, "SiLU");
    let (w, b) = (
        Tensor::<1>::random([6], Distribution::Normal(1.0, 0.5), &device),
        Tensor::<1>::random([6], Distribution::Normal(0.0, 0.5), &device),
    );
    for (affine, act) in [(false, false), (true, false), (true, true)] {
        let got = fused::group_norm(x.clone(), 3, 1e-6, affine.then(|| (w.clone(), b.clone())), act);
        let [n, c, h, wd] = x.dims();
        let g = x.clone().reshape([n, 3, c / 3 * h * wd]);
        let mean = g.clone().mean_dim(2);
        let var = (g.clone() - mean.clone()).powf_scalar(2.0).mean_dim(2);
        let mut want = ((g - mean) / (var + 1e-6).sqrt()).reshape([n, c, h, wd]);
        if affine {
            want = want * w.clone().reshape([1, 6, 1, 1]) + b.clone().reshape([1, 6, 1, 1]);
        }
        if act {
            want = silu(want);
        }
        assert!(max_diff(got, want) < 1e-5, "GroupNorm affine {affine} act {act}");
    }
}

/// Shapes the host attention does not index (k or v shared across the batch, another width, a
/// bias axis neither full nor 1, no keys) go to Burn's kernel instead.
#[test]
fn attention_refuses_shapes_it_does_not_index() {
    let device = mergevq::device();
    let z = |d: [usize; 4]| Tensor::<4>::zeros(d, &device);
    let (q, k) = (z([2, 3, 64, 8]), z([2, 3, 10, 8]));
    assert!(cpu::attention::applies(&q, &k, &k, Some(&z([1, 3, 1, 10]))));
    assert!(!cpu::attention::applies(&q, &z([1, 3, 10, 8]), &z([1, 3, 10, 8]), None));
    assert!(!cpu::attention::applies(&q, &k, &z([2, 3, 10, 4]), None));
    assert!(!cpu::attention::applies(&q, &z([2, 3, 0, 8]), &z([2, 3, 0, 8]), None));
    assert!(!cpu::attention::applies(
        &z([4, 3, 64, 8]),
        &z([4, 3, 10, 8]),
        &z([4, 3, 10, 8]),
        Some(&z([2, 3, 64, 10]))
    ));
    assert!(!cpu::attention::applies(&q, &k, &k, Some(&z([2, 3, 64, 1]))));
    assert!(!cpu::attention::applies(&z([2, 3, 63, 8]), &k, &k, None));
}
